# Table 1 of Yu et al. (CVPR 2019), Cars-196: ML + KD (rel) + hint, the relative teacher (Eq. 5-6) with hint losses (Eq.
# 9); ResNet-18 student, ResNet-101 teacher, lambda = 0.1.
_base_ = ['./metric-kd-rel_r101-r18_cars.py', '../_base_/models/metric_kd_feature_losses.py']
model = dict(feature_losses={{_base_.hint_r101_r18}})
