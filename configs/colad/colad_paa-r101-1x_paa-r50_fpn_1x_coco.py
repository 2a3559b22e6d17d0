# CoLAD (Nguyen et al., WACV 2022), Table 5 row "CoLAD (1x), PAA-R50 init No, PAA-R101 init 1x": as
# colad_paa-r101_paa-r50_fpn_1x_coco.py, but PAA-R101 starts from mmdet's COCO 1x checkpoint (42.6 AP).
# Paper, COCO val: PAA-R50 (validated here) 40.4 -> 41.6 AP; PAA-R101 43.5 (PAA 2x) -> 44.1 AP after this second 1x
# (test it with --cfg-options model.predict_network=r101).
_base_ = ['./colad_paa-r101_paa-r50_fpn_1x_coco.py']

r101_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/paa/paa_r101_fpn_1x_coco/'
             'paa_r101_fpn_1x_coco_20200821-0a1825a4.pth')
model = dict(checkpoints=dict(r101=r101_ckpt))
