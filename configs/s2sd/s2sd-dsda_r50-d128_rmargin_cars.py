# Table 4 of Roth et al. (ICML 2021), "R-Margin + DSDA" on CARS196: s2sd-dsd_r50-d128_rmargin_cars.py with the A
# variant: the target branches (and the feature distillation) take the sum of the global average and max pooled ResNet
# features.
_base_ = ['./s2sd-dsd_r50-d128_rmargin_cars.py']
model = dict(target_pooling='avg_max')
