# Toy teacher: the 32-wide DeepLabV3+ adapted source -> target by output-space adversarial learning (discriminators on
# the main and auxiliary outputs). The teacher of the toy distillation configs and of `tools/quickstart.py seg`.
_base_ = ['../_base_/datasets/toy_scenes_uda.py', '../_base_/schedules/toy_seg_uda.py']
model = dict(
    type='SegOutputSpaceAdaptation',
    student='{{fileDirname}}/deeplabv3plus-w32_toy-scenes-source.py',
    discriminator=dict(type='OutputSpaceDiscriminator', base_channels=16, num_convs=4),
    adv_weights=dict(decode_head=1e-3, auxiliary_head=2e-4))
