# Table 1 of Yu et al. (CVPR 2019), Cars-196: the ResNet-101 teacher trained with the batch-hard triplet loss (margin 0,
# the reference code's), 512-d linear embedding after global average pooling, fine-tuned from ImageNet.
_base_ = [
    '../_base_/models/embedder_r101_triplet.py', '../_base_/datasets/cars196_retrieval.py',
    '../_base_/schedules/metric_adam.py', '../_base_/metric_runtime.py'
]
