# SSIM-KD (main paper) l2 feature mimicking baseline of P3-P7 (raw maps, mean squared error). Paper: 39.0 AP.
# The weight is not given for this row; 1.0 here.
_base_ = ['./ssim_retinanet_r101-ms3x_r50_fpn_1x_coco.py']
model = dict(distill_loss=dict(_delete_=True, type='MSELoss', loss_weight=1.0))
