# Table 1 of Yu et al. (CVPR 2019), Cars-196: ML + KD (rel) + AT, the relative teacher (Eq. 5-6) with attention transfer
# (Eq. 12); ResNet-18 student, ResNet-101 teacher, lambda = 0.1.
_base_ = ['./metric-kd-rel_r101-r18_cars.py', '../_base_/models/metric_kd_feature_losses.py']
model = dict(feature_losses={{_base_.attention_resnet}})
