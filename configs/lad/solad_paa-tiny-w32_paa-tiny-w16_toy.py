# SoLAD on the toy shapes: LAD (the teacher's label assignment, see lad_paa-tiny-w32_paa-tiny-w16_toy.py) plus the
# paper's soft-label distillation, as in solad_paa-r101_paa-r50_fpn_1x_coco.py: the focal KL between the student's
# and the teacher's class scores (Eq. 1, gamma 0.5) and GIoU from the student's boxes to the teacher's where the
# teacher's box overlaps its nearest GT by IoU > 0.5.
_base_ = ['./lad_paa-tiny-w32_paa-tiny-w16_toy.py']

model = dict(
    type='SoLADDistiller',
    soft_label_loss=dict(type='SoftLabelKLLoss', gamma=0.5, loss_weight=1.0),
    box_distill_loss=dict(type='GIoULoss', loss_weight=1.3),
    distill_iou_thr=0.5)
