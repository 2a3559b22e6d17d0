# COP, Table 10 row 7 "COP" alone with ResNet-18: no IoU branch at training nor at inference. Paper: R18 36.9 AP,
# COCO val.
_base_ = ['./cop_paa-r18_fpn_1x_coco.py']
model = dict(bbox_head=dict(iou_branch='none'))
