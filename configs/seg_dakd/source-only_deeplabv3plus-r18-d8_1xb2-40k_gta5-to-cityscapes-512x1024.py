# Source-only student of GTA5 -> Cityscapes: DeepLabV3+ R18-D8 (the widths of mmseg's deeplabv3plus_r18-d8 Cityscapes
# config) trained on the labelled GTA5 images alone and validated on Cityscapes val. Its model is the student of the
# AdaptSeg student and of the distillation configs.
_base_ = ['./source-only_deeplabv3plus-r101-d8_1xb2-40k_gta5-to-cityscapes-512x1024.py']
model = dict(
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18),
    decode_head=dict(c1_in_channels=64, c1_channels=12, in_channels=512, channels=128),
    auxiliary_head=dict(in_channels=256, channels=64))
