# Table 1 of Yu et al. (CVPR 2019), Cars-196: ML + KD (abs) + AT, the absolute teacher (Eq. 4) with attention transfer
# (Eq. 12); ResNet-18 student, ResNet-101 teacher, lambda = 1.5.
_base_ = ['./metric-kd-abs_r101-r18_cars.py', '../_base_/models/metric_kd_feature_losses.py']
model = dict(feature_losses={{_base_.attention_resnet}})
