# CoLAD (Nguyen et al., WACV 2022), Table 4 row "CoLAD - Std/Mean" (PAA-R101 train 2x): the 1x pair of
# colad-stdmean_paa-r50-1x_paa-r101_fpn_1x_coco.py (PAA-R50 from mmdet's COCO 1x checkpoint, PAA-R101 from ImageNet)
# trained for 2x. Paper, COCO val: PAA-R101 43.5 (PAA 2x) -> 43.9 AP.
# Schedule, for each network (Sec. 4.1): 2x = 24 epochs with lr / 10 after epochs 16 and 22; the rest as 1x.
_base_ = ['./colad-stdmean_paa-r50-1x_paa-r101_fpn_1x_coco.py']

train_cfg = dict(max_epochs=24)
_schedule = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1)
]
param_scheduler = dict(r50=_schedule, r101=_schedule)
