# COP (CoLAD appendix A), Table 10 row 3 "IoU + COP" with a ResNet-18 backbone: the PAA-R18 baseline
# (paa_r18_fpn_1x_coco.py, mmdet's PAA-R50 1x with ResNet-18 stages) with its head amended with Conditional
# Objectness Prediction (COPHead, Eq. (4)); same schedule and data. Paper: R18 35.8 (PAA) -> 36.9 AP, COCO val.
_base_ = ['./paa_r18_fpn_1x_coco.py']
model = dict(bbox_head=dict(type='COPHead', iou_branch='train_test'))
