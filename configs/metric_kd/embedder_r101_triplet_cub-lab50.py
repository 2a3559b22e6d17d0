# Table 3 of Yu et al. (CVPR 2019), CUB-200-2011, 50% labelled: the ResNet-101 teacher trained on half of the training
# images of each class (margin 0, the reference code's), 512-d linear embedding after global average pooling, fine-tuned
# from ImageNet.
_base_ = ['./embedder_r101_triplet_cub.py']
train_dataloader = dict(dataset=dict(unlabeled_fraction=0.5, drop_unlabeled=True))
