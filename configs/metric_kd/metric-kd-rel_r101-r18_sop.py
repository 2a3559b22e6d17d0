# Table 2 of Yu et al. (CVPR 2019), Stanford Online Products: ML + KD (rel), the relative teacher (Eq. 5-6); ResNet-18
# student, ResNet-101 teacher, lambda = 1.0 (the reference lambda for Stanford Online Products).
_base_ = ['./metric-kd-abs_r101-r18_sop.py']
model = dict(distill_loss=dict(type='RelativeDistanceLoss', loss_weight=1.0))
