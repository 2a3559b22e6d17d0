# Table 4 of Roth et al. (ICML 2021), "Margin" on CUB200-2011: the baseline of S2SD, the 128-d ResNet-50 embedding
# trained alone with the margin loss (distance-weighted sampling, cutoff 0.5; margin 0.2; beta 1.2, one learnable
# boundary per training class, at lr 5e-4 = 50 x the base lr).
_base_ = [
    '../_base_/models/embedder_r50_d128.py', '../_base_/datasets/cub200_s2sd.py', '../_base_/schedules/s2sd_adam.py',
    '../_base_/metric_runtime.py'
]
model = dict(loss=dict(type='MarginLoss', margin=0.2, beta=1.2, learn_beta=True, num_classes=100, cutoff=0.5))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'loss.beta': dict(lr_mult=50.0)}))
