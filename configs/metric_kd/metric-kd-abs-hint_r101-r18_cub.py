# Table 1 of Yu et al. (CVPR 2019), CUB-200-2011: ML + KD (abs) + hint, the absolute teacher (Eq. 4) with hint losses
# (Eq. 9); ResNet-18 student, ResNet-101 teacher, lambda = 1.0.
_base_ = ['./metric-kd-abs_r101-r18_cub.py', '../_base_/models/metric_kd_feature_losses.py']
model = dict(feature_losses={{_base_.hint_r101_r18}})
