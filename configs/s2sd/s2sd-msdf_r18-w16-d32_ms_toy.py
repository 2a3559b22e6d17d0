# Toy MSDF of `tools/quickstart.py s2sd`: four target branches of 128 / 256 / 384 / 512 dimensions (the paper's
# 512 / 1024 / 1536 / 2048 for a 128-d base, scaled to the 32-d toy base) and feature distillation (weight 50) from
# iteration 200 on (the paper's 1000 of about 7800 CUB iterations; the toy run has 1500).
_base_ = ['./s2sd-dsd_r18-w16-d32_ms_toy.py']
model = dict(target_dims=(128, 256, 384, 512), feat_distill_weight=50.0)
custom_hooks = [
    dict(type='SamplerBatchCheckHook'),
    dict(type='SyncBuffersHook'),
    dict(type='S2SDFeatureDistillationHook', start_iter=200)
]
