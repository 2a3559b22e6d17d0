# Domain-adaptive distillation (Kothandaraman et al., WACV 2021 workshops), GTA5 -> Cityscapes, Table 1 row (vii) of
# the supplementary, paradigm (a) source-domain distillation: the DeepLabV3+ R18-D8 student, adapted by output-space
# adversarial learning (discriminators on the decode and auxiliary outputs, weights 1e-3 and 2e-4), learns on the
# source images from the adapted R101-D8 teacher with KL 0.1 + MSE 0.01 + quasi-teacher CE 1.0 on the decode head (the
# best lambdas of the row). The other rows and paradigms inherit from this config. The paper ran Table 1 on BDD100K ->
# Cityscapes only: the GTA5 configs use the same settings.
#
# Train the teacher first: python tools/train.py
# configs/seg_dakd/adaptseg_deeplabv3plus-r101-d8_1xb2-40k_gta5-to-cityscapes-512x1024.py (its final checkpoint is
# teacher_ckpt below).
#
# Models: the paper's teacher DRN-D-38 and student DRN-D-22 are not in mmseg; DeepLabV3+ R101-D8 -> R18-D8 (mmseg's
# Cityscapes models, ImageNet-pretrained ResNetV1c backbones) is the closest pair it ships: dilated ResNets of output
# stride 8 like DRN, the same family for teacher and student, and an auxiliary FCN head on stage 3 beside the decode
# head, the two output levels of the paper's main and auxiliary discriminators.
_base_ = ['../_base_/datasets/gta5_to_cityscapes_uda.py', '../_base_/schedules/seg_dakd_uda_40k.py']
model = dict(
    type='DomainAdaptiveDistiller',
    student='{{fileDirname}}/source-only_deeplabv3plus-r18-d8_1xb2-40k_gta5-to-cityscapes-512x1024.py',
    teacher_cfg='{{fileDirname}}/adaptseg_deeplabv3plus-r101-d8_1xb2-40k_gta5-to-cityscapes-512x1024.py',
    teacher_ckpt='work_dirs/adaptseg_deeplabv3plus-r101-d8_1xb2-40k_gta5-to-cityscapes-512x1024/iter_40000.pth',
    distill_losses=dict(
        kl=dict(type='PixelKLLoss', loss_weight=0.1),
        mse=dict(type='PixelMSELoss', loss_weight=0.01),
        ce=dict(type='QuasiTeacherCELoss', loss_weight=1.0)),
    distill_domains=('source', ),
    discriminator=dict(type='OutputSpaceDiscriminator', base_channels=64, num_convs=5, negative_slope=0.2),
    adv_weights=dict(decode_head=1e-3, auxiliary_head=2e-4))
