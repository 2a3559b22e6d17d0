# SoLAD (Nguyen et al., WACV 2022), Table 2 row "SoLAD - KL loss": LAD with the teacher's labels plus the
# soft-label KL loss (Eq. 1, gamma 0.5) and box distillation; PAA-R101 -> PAA-R50, paper 40.4 -> 42.4 AP.
# Standard 500-iteration warm-up (the row is not marked (*)). The paper gives no weight for the box
# distillation: GIoU with weight 1.3, the weight of PAA's own GIoU box loss (see README.md).
_base_ = ['./lad_paa-r101_paa-r50_fpn_1x_coco.py']
model = dict(
    type='SoLADDistiller',
    soft_label_loss=dict(type='SoftLabelKLLoss', gamma=0.5, loss_weight=1.0),
    box_distill_loss=dict(type='GIoULoss', loss_weight=1.3),
    distill_iou_thr=0.5)
