# PAA-R18 baseline (the student of the CoLAD paper's Table 6 and Table 11, Nguyen et al., WACV 2022): mmdet's PAA-R50
# 1x with a ResNet-18 backbone (ImageNet-pretrained, torchvision) and the FPN inputs of its stages; same head,
# schedule and data (SGD lr 0.01, 12 epochs, steps 8 / 11, batch 16). mmdet ships no PAA-R18. Paper: 35.8 AP, COCO.
_base_ = ['mmdet::paa/paa_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
# the paper's batch 16 = 8 GPUs x 2 images; on fewer GPUs pass --auto-scale-lr to scale lr from this base
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
