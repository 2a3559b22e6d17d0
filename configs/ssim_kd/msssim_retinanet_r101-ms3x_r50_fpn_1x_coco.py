# SSIM-KD appendix Table 1 row "MS-SSIM": 1 - MS-SSIM of P3-P7. Paper: 36.4 -> 39.9 AP. mmkd's choices: min-max
# normalised channels (the paper does not say how it scales the maps), Wang et al.'s MS-SSIM with 2x2 pooling
# between levels (multiscale='downsample'; the appendix's wording, growing windows on one map, is
# multiscale='window'). P6/P7 (13x21, 7x11) fall below one 11x11 window after the first halvings: mmkd shrinks
# the window there.
_base_ = ['./ssim_retinanet_r101-ms3x_r50_fpn_1x_coco.py']
model = dict(distill_loss=dict(_delete_=True, type='MSSSIMLoss', loss_weight=2.0, normalize='minmax'))
