# Toy baseline of `tools/quickstart.py s2sd`: the 16-wide ResNet-18 of the metric-learning toy teacher
# (configs/metric_kd/embedder_r18-w16_ms_toy.py) with an 8-d embedding on the unit sphere, trained alone from random
# weights with the multi-similarity loss. 8-d because that is where the toy data leave room above the base
# embedding: trained alone (seed 0, 30 epochs) an 8-d embedding reached 42.2 R@1, 32-d 48.4 and 512-d 49.2, so a
# 32-d base could gain at most about one point from a high-dimensional target (the paper's Table 8 shows its largest
# gains at low dimensions too: R@1 54.5 -> 59.8 at d = 32 on CUB200-2011 with DSD).
# tools/train.py draws a random seed unless given one (--cfg-options randomness.seed=0); the quickstart seeds every
# stage.
_base_ = ['../metric_kd/embedder_r18-w16_ms_toy.py']
model = dict(embed_dim=8)
# the S2SD table's measures: density pi_ratio and spectral decay rho (Roth et al.'s generalisation metrics) besides
# recall, mAP@R and NMI
val_evaluator = dict(type='RetrievalMetric', ks=(1, 2, 4, 8), measures=('recall', 'map_at_r', 'nmi', 'pi_ratio', 'rho'))
test_evaluator = val_evaluator
