# Soft-label distillation, Table 2 row "Soft-Label - KL loss", gamma 2: PAA-R101 -> PAA-R50, paper 39.6 AP
# (-0.8). Not marked (*): mmdet's standard 500-iteration warm-up.
_base_ = ['./solabel-kl-g0.5_paa-r101_paa-r50_fpn_1x_coco.py']
model = dict(soft_label_loss=dict(gamma=2.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
