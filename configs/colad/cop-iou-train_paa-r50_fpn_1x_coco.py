# COP, Table 10 row 5 "IoU (*) + COP": the IoU branch is trained but not used at inference (scores = COP's class
# probability alone). Paper: R50 41.6 AP, COCO val.
_base_ = ['./cop_paa-r50_fpn_1x_coco.py']
model = dict(bbox_head=dict(iou_branch='train'))
