# Table 4 of Roth et al. (ICML 2021), "Margin + MSDA" on SOP: s2sd-msd_r50-d128_margin_sop.py with the A variant: the
# target branches (and the feature distillation) take the sum of the global average and max pooled ResNet features.
_base_ = ['./s2sd-msd_r50-d128_margin_sop.py']
model = dict(target_pooling='avg_max')
