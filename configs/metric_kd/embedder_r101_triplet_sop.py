# Table 2 of Yu et al. (CVPR 2019), Stanford Online Products: the ResNet-101 teacher trained with the batch-hard triplet
# loss (margin 0, the reference code's), 512-d linear embedding after global average pooling, fine-tuned from ImageNet.
_base_ = [
    '../_base_/models/embedder_r101_triplet.py', '../_base_/datasets/sop_retrieval.py',
    '../_base_/schedules/metric_adam.py', '../_base_/metric_runtime.py'
]
optim_wrapper = dict(optimizer=dict(lr=1e-6))  # Sec. 5.1: 1e-6 on SOP
