# COP, Table 10 row 5 "IoU (*) + COP" with ResNet-18: the IoU branch is trained but not used at inference.
# Paper: R18 36.9 AP, COCO val.
_base_ = ['./cop_paa-r18_fpn_1x_coco.py']
model = dict(bbox_head=dict(iou_branch='train'))
