# Soft-label distillation, Table 2 row "Soft-Label - L2 loss": (p_t - p_s)^2 on the sigmoid class scores,
# PAA-R101 -> PAA-R50, paper 41.0 AP (+0.6). Not marked (*): 500-iteration warm-up, as the gamma 2 row.
_base_ = ['./solabel-kl-g2_paa-r101_paa-r50_fpn_1x_coco.py']
model = dict(soft_label_loss=dict(_delete_=True, type='SoftLabelL2Loss', loss_weight=1.0))
