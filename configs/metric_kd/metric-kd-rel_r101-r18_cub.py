# Table 1 of Yu et al. (CVPR 2019), CUB-200-2011: ML + KD (rel), the relative teacher (Eq. 5-6); ResNet-18 student,
# ResNet-101 teacher, lambda = 0.3 (the reference lambda for CUB-200-2011).
_base_ = ['./metric-kd-abs_r101-r18_cub.py']
model = dict(distill_loss=dict(type='RelativeDistanceLoss', loss_weight=0.3))
