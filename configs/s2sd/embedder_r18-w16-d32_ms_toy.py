# Toy baseline of `tools/quickstart.py s2sd`: the 16-wide ResNet-18 of the metric-learning toy teacher
# (configs/metric_kd/embedder_r18-w16_ms_toy.py) with a 32-d embedding on the unit sphere, trained alone with the
# multi-similarity loss: the low base dimension where S2SD helps most in the paper (Table 8: R@1 54.5 -> 59.8 at
# d = 32 on CUB200-2011 with DSD).
_base_ = ['../metric_kd/embedder_r18-w16_ms_toy.py']
model = dict(embed_dim=32)
# the S2SD table's measures: density pi_ratio and spectral decay rho (Roth et al.'s generalisation metrics) besides
# recall, mAP@R and NMI
val_evaluator = dict(type='RetrievalMetric', ks=(1, 2, 4, 8), measures=('recall', 'map_at_r', 'nmi', 'pi_ratio', 'rho'))
test_evaluator = val_evaluator
