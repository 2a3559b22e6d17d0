# SoLAD (Nguyen et al., WACV 2022), Table 11 row R50 -> R18, SoLAD: solad_paa-r101_paa-r18_fpn_1x_coco.py with the
# fixed teacher PAA-R50 (mmdet 1x, 40.4 AP) instead of PAA-R101; same losses and schedule.
# Paper: PAA-R18 35.8 -> 38.0 AP.
_base_ = ['./solad_paa-r101_paa-r18_fpn_1x_coco.py']

teacher_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/paa/paa_r50_fpn_1x_coco/'
                'paa_r50_fpn_1x_coco_20200821-936edec3.pth')
model = dict(teacher_cfg='mmdet::paa/paa_r50_fpn_1x_coco.py', teacher_ckpt=teacher_ckpt)
