# Table 3 of Yu et al. (CVPR 2019), CUB-200-2011, 50% labelled: ML + KD (rel) on the labelled half only; the teacher is
# the ResNet-101 trained on that half, lambda = 0.3.
_base_ = ['./metric-kd-abs_r101-r18_cub-lab50.py']
model = dict(distill_loss=dict(type='RelativeDistanceLoss', loss_weight=0.3))
