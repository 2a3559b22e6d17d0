# CoLAD (Nguyen et al., WACV 2022), Table 5 row "CoLAD (2x), init No / No": the pair of
# colad_paa-r101_paa-r50_fpn_1x_coco.py (both from ImageNet) trained for 2x.
# Paper, COCO val: PAA-R50 (validated here) 41.6 (PAA 2x) -> 42.4 AP; PAA-R101 43.5 (PAA 2x) -> 44.1 AP (test it
# with --cfg-options model.predict_network=r101).
# Schedule, for each network (Sec. 4.1): 2x = 24 epochs with lr / 10 after epochs 16 and 22; the rest as 1x.
_base_ = ['./colad_paa-r101_paa-r50_fpn_1x_coco.py']

train_cfg = dict(max_epochs=24)
_schedule = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1)
]
param_scheduler = dict(r101=_schedule, r50=_schedule)
