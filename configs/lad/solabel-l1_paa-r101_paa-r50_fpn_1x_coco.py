# Soft-label distillation, Table 2 row "Soft-Label - L1 loss*": |p_t - p_s| on the sigmoid class scores,
# PAA-R101 -> PAA-R50, paper 40.4 AP (+0.0). 3000-iteration warm-up (*), as the KL row it is based on.
_base_ = ['./solabel-kl-g0.5_paa-r101_paa-r50_fpn_1x_coco.py']
model = dict(soft_label_loss=dict(_delete_=True, type='SoftLabelL1Loss', loss_weight=1.0))
