# Soft-label distillation, Table 2 row "Soft-Label - KL loss*", gamma 0 (plain binary KL on every class):
# PAA-R101 -> PAA-R50, paper 39.8 AP (-0.6). 3000-iteration warm-up (*), as the gamma 0.5 row it is based on.
_base_ = ['./solabel-kl-g0.5_paa-r101_paa-r50_fpn_1x_coco.py']
model = dict(soft_label_loss=dict(gamma=0.0))
