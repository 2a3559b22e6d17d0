# SoLAD (Nguyen et al., WACV 2022), Table 11 row R101 -> R18, SoLAD: configs/lad/solad_paa-r101_paa-r50_fpn_1x_coco.py
# (LAD with the fixed PAA-R101 teacher + soft-label KL, gamma 0.5, + box distillation) with a PAA-R18 student
# (ImageNet-pretrained ResNet-18, as paa_r18_fpn_1x_coco.py); same schedule. Paper: PAA-R18 35.8 -> 38.4 AP.
_base_ = ['../lad/solad_paa-r101_paa-r50_fpn_1x_coco.py']

model = dict(
    student=dict(
        backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
        neck=dict(in_channels=[64, 128, 256, 512])))
