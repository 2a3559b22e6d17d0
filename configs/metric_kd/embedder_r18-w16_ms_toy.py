# Toy teacher of `tools/quickstart.py metric`: a 16-wide ResNet-18 (a quarter of a ResNet-18's channels, its second
# stage at stride 4 for the 64 x 64 toy images) embedding the toy retrieval species in 64-d on the unit sphere, trained
# from random weights with the multi-similarity loss. Not the paper's batch-hard triplet with margin 0 on raw embeddings
# (configs/metric_kd/*_cub.py): from random weights a batch-hard triplet loss (margin 0 raw, or margin 0.2 on the
# sphere) was minimised here by pulling every embedding towards one point (R@1 3-4 %, chance 2 %), while
# multi-similarity learns (README.md, "Toy results").
_base_ = ['../_base_/datasets/toy_retrieval.py', '../_base_/metric_runtime.py']
model = dict(
    type='ImageEmbedder',
    backbone=dict(type='ResNet', depth=18, base_channels=16, strides=(1, 1, 2, 2), out_indices=(3, ), norm_eval=False),
    embed_dim=64,
    pooling='avg',
    normalize=True,
    loss=dict(type='MultiSimilarityLoss'))
# from random weights Adam needs a far larger step than the paper's fine-tuning lr (1e-5); constant, as in the paper
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, weight_decay=0.0))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=30, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = []
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=10, max_keep_ckpts=1))
log_processor = dict(window_size=10)
