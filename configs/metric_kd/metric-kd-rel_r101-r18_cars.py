# Table 1 of Yu et al. (CVPR 2019), Cars-196: ML + KD (rel), the relative teacher (Eq. 5-6); ResNet-18 student,
# ResNet-101 teacher, lambda = 0.1 (the reference lambda for Cars-196).
_base_ = ['./metric-kd-abs_r101-r18_cars.py']
model = dict(distill_loss=dict(type='RelativeDistanceLoss', loss_weight=0.1))
