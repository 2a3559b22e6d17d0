# Table 4 of Roth et al. (ICML 2021), "R-Margin + MSDF" on CARS196: s2sd-msd_r50-d128_rmargin_cars.py plus feature
# distillation (F): from iteration 1000 on (S2SDFeatureDistillationHook), the base similarities also learn those of the
# L2-normalised, detached average-pooled ResNet features, weight 50.
_base_ = ['./s2sd-msd_r50-d128_rmargin_cars.py']
model = dict(feat_distill_weight=50.0)
custom_hooks = [
    dict(type='SamplerBatchCheckHook'),
    dict(type='SyncBuffersHook'),
    dict(type='S2SDFeatureDistillationHook', start_iter=1000)
]
