# The network of the CoLAD paper's (Nguyen et al., WACV 2022) Table 7 row "CoLAD, ResNeXt-64x4d-101-DCN" (49.2 AP,
# COCO test-dev), which Sec. 4.4 takes as the teacher of PAA-Swin-B: PAA with a ResNeXt-101 64x4d backbone
# (ImageNet-pretrained, deformable convolutions in stages c3-c5 as in mmdet's "dconv-c3-c5" configs: the paper does
# not say more) and the COP head (appendix A, IoU branch kept). Trained alone this config is the PAA-COP baseline of
# that backbone, which the paper does not report; the paper's network was trained with CoLAD (teacher PAA-R50, 3x,
# multi-scale), whose weights are not published.
# Schedule (Sec. 4.3): 2x = 24 epochs, SGD lr 0.01, steps 16 / 22, the shorter side drawn in [640, 800], batch 16.
_base_ = ['mmdet::paa/paa_r50_fpn_2x_coco.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=64,
        base_width=4,
        dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True),
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnext101_64x4d')),
    bbox_head=dict(type='COPHead', iou_branch='train_test'))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=[(1333, 640), (1333, 800)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
# the paper's batch 16 = 8 GPUs x 2 images; on fewer GPUs pass --auto-scale-lr to scale lr from this base
auto_scale_lr = dict(enable=False, base_batch_size=16)
