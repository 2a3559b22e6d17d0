# AdaptSeg teacher of BDD100K -> Cityscapes: DeepLabV3+ R101-D8 (from ImageNet weights) adapted from labelled BDD100K
# to unlabelled Cityscapes by output-space adversarial learning (Tsai et al., CVPR 2018): one discriminator on the
# softmax maps of the decode head (adversarial weight 1e-3) and one on those of the auxiliary head (2e-4), 4x4
# convolutions with 64, 128, 256, 512, 1 channels and LeakyReLU 0.2, as in the paper. The teacher of the
# dakd-*_1xb2-40k_bdd100k-to-cityscapes-512x1024.py configs: train it first, its final checkpoint is their
# teacher_ckpt.
_base_ = ['../_base_/datasets/bdd100k_to_cityscapes_uda.py', '../_base_/schedules/seg_dakd_uda_40k.py']
model = dict(
    type='SegOutputSpaceAdaptation',
    student='{{fileDirname}}/source-only_deeplabv3plus-r101-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py',
    discriminator=dict(type='OutputSpaceDiscriminator', base_channels=64, num_convs=5, negative_slope=0.2),
    adv_weights=dict(decode_head=1e-3, auxiliary_head=2e-4))
