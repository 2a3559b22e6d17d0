# Table 4 of Roth et al. (ICML 2021), "Margin + MSDF" on SOP: s2sd-msd_r50-d128_margin_sop.py plus feature distillation
# (F): from iteration 1000 on (S2SDFeatureDistillationHook), the base similarities also learn those of the
# L2-normalised, detached average-pooled ResNet features, weight 5 (the paper's weight on SOP; 50 on CUB200-2011 and
# CARS196).
_base_ = ['./s2sd-msd_r50-d128_margin_sop.py']
model = dict(feat_distill_weight=5.0)
custom_hooks = [
    dict(type='SamplerBatchCheckHook'),
    dict(type='SyncBuffersHook'),
    dict(type='S2SDFeatureDistillationHook', start_iter=1000)
]
