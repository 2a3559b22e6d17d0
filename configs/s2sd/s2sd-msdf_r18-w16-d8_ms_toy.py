# Toy MSDF of `tools/quickstart.py s2sd`: four target branches of 128 / 256 / 384 / 512 dimensions (the paper's
# 512 / 1024 / 1536 / 2048 scaled down by 4, as the toy backbone's 128 channels are a 16th of ResNet-50's 2048) and
# feature distillation from iteration 200 on (the paper's 1000 of about 7800 CUB iterations; the toy run has 1500),
# weighted like the KL terms (5, see s2sd-dsd_r18-w16-d8_ms_toy.py for why not 50).
_base_ = ['./s2sd-dsd_r18-w16-d8_ms_toy.py']
model = dict(target_dims=(128, 256, 384, 512), feat_distill_weight=5.0)
custom_hooks = [
    dict(type='SamplerBatchCheckHook'),
    dict(type='SyncBuffersHook'),
    dict(type='S2SDFeatureDistillationHook', start_iter=200)
]
