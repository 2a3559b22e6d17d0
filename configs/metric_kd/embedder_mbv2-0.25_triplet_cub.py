# Table 5 of Yu et al. (CVPR 2019), CUB-200-2011: a width-0.25 MobileNet trained alone with the batch-hard triplet loss
# (margin 0, the reference code's) on a 512-d linear embedding after global average pooling. The paper fine-tunes from
# ImageNet and does not say which MobileNet; mmkd uses mmdet's MobileNetV2 with widen_factor 0.25, for which mmdet
# publishes no ImageNet weights: give yours with an init_cfg or load_from. From random weights its BN layers must learn
# their statistics (norm_eval=False; with frozen random statistics every embedding starts in one point), and the
# paper's lr of 1e-5 is slow.
_base_ = ['../_base_/datasets/cub200_retrieval.py', '../_base_/schedules/metric_adam.py', '../_base_/metric_runtime.py']
model = dict(
    type='ImageEmbedder',
    backbone=dict(type='MobileNetV2', widen_factor=0.25, out_indices=(7, ), norm_eval=False),
    embed_dim=512,
    pooling='avg',
    normalize=False,
    loss=dict(type='BatchHardTripletLoss', margin=0.0))
