# Toy student alone: the 8-wide DeepLabV3+ adapted source -> target by output-space adversarial learning
# (discriminators on the main and auxiliary outputs). No teacher: the "student" row of the toy comparison.
_base_ = ['../_base_/datasets/toy_scenes_uda.py', '../_base_/schedules/toy_seg_uda.py']
model = dict(
    type='SegOutputSpaceAdaptation',
    student='{{fileDirname}}/deeplabv3plus-w8_toy-scenes-source.py',
    discriminator=dict(type='OutputSpaceDiscriminator', base_channels=16, num_convs=4),
    adv_weights=dict(decode_head=1e-3, auxiliary_head=2e-4))
