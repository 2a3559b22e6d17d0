# SSIM-KD appendix Table 1 row "l1 + MS-SSIM": 0.15 * l1 + 0.85 * (1 - MS-SSIM) (Zhao et al.) of P3-P7.
# Paper: 36.4 -> 40.0 AP. mmkd's choice: both terms on min-max normalised channels (the paper does not say).
_base_ = ['./ssim_retinanet_r101-ms3x_r50_fpn_1x_coco.py']
model = dict(distill_loss=dict(_delete_=True, type='L1MSSSIMLoss', alpha=0.15, loss_weight=2.0, normalize='minmax'))
