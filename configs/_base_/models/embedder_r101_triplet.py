# The embedding networks of Yu et al. (CVPR 2019), Sec. 5.1: an ImageNet-pretrained ResNet, global average pooling,
# a linear 512-d embedding, the batch-hard triplet loss with the reference code's margin 0 on the raw embedding.
# The ImageNet weights are torchvision's file, by URL: mmengine's torchvision:// scheme needs torchvision installed.
model = dict(
    type='ImageEmbedder',
    backbone=dict(
        type='ResNet',
        depth=101,
        out_indices=(3, ),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='https://download.pytorch.org/models/resnet101-63fe2227.pth')),
    embed_dim=512,
    pooling='avg',
    normalize=False,
    loss=dict(type='BatchHardTripletLoss', margin=0.0))
