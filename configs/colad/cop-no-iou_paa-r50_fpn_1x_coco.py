# COP, Table 10 row 7 "COP" alone: no IoU branch at training nor at inference (no IoU conv, no IoU loss; the
# head's loss_centerness setting is then unused). Paper: R50 41.2 AP, COCO val.
_base_ = ['./cop_paa-r50_fpn_1x_coco.py']
model = dict(bbox_head=dict(iou_branch='none'))
