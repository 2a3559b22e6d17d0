# LAD (Nguyen et al., WACV 2022), Table 6 row "Teacher PAA-R50, init 1x, LAD" (= Table 11 row R50 -> R18, LAD):
# configs/lad/lad_paa-r50_paa-r101_fpn_1x_coco.py (fixed teacher PAA-R50, mmdet 1x, 40.4 AP) with a PAA-R18 student
# (ImageNet-pretrained ResNet-18, as paa_r18_fpn_1x_coco.py); same schedule. Paper: PAA-R18 35.8 -> 36.9 AP.
_base_ = ['../lad/lad_paa-r50_paa-r101_fpn_1x_coco.py']

model = dict(
    student=dict(
        backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
        neck=dict(in_channels=[64, 128, 256, 512])))
