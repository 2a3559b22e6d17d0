# Table 1 of Yu et al. (CVPR 2019), CUB-200-2011: ML + KD (abs) + AT, the absolute teacher (Eq. 4) with attention
# transfer (Eq. 12); ResNet-18 student, ResNet-101 teacher, lambda = 1.0.
_base_ = ['./metric-kd-abs_r101-r18_cub.py', '../_base_/models/metric_kd_feature_losses.py']
model = dict(feature_losses={{_base_.attention_resnet}})
