# Table 5 of Yu et al. (CVPR 2019), CUB-200-2011: a width-0.25 MobileNet trained alone with the batch-hard triplet loss.
# mmkd uses mmdet's MobileNetV2 (the paper does not say which MobileNet; see README) from random weights: mmdet
# publishes no ImageNet weights for width 0.25 (load_from one of yours) (margin 0, the reference code's), 512-d linear
# embedding after global average pooling, fine-tuned from ImageNet.
_base_ = ['../_base_/datasets/cub200_retrieval.py', '../_base_/schedules/metric_adam.py', '../_base_/metric_runtime.py']
model = dict(
    type='ImageEmbedder',
    backbone=dict(type='MobileNetV2', widen_factor=0.25, out_indices=(7, ), norm_eval=True),
    embed_dim=512,
    pooling='avg',
    normalize=False,
    loss=dict(type='BatchHardTripletLoss', margin=0.0))
