# Table 4 of Roth et al. (ICML 2021), "Multisimilarity" on CUB200-2011: the baseline of S2SD, the 128-d ResNet-50
# embedding trained alone with the multi-similarity loss (alpha 2, beta 40, lambda 0.5, miner epsilon 0.1; supplementary
# B).
_base_ = [
    '../_base_/models/embedder_r50_d128.py', '../_base_/datasets/cub200_s2sd.py', '../_base_/schedules/s2sd_adam.py',
    '../_base_/metric_runtime.py'
]
model = dict(loss=dict(type='MultiSimilarityLoss', alpha=2.0, beta=40.0, base=0.5, epsilon=0.1))
