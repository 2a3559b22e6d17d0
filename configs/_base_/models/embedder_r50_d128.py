# The embedding network of S2SD (Roth et al., ICML 2021, supplementary A.2), the setup of Roth et al. (ICML 2020):
# an ImageNet-pretrained ResNet-50 with frozen BatchNorm (norm_eval=True: the BN statistics stay ImageNet's, the BN
# affine parameters are still trained), global average pooling, a linear 128-d embedding, L2-normalised. The
# criterion (`loss`) is set by each config. The ImageNet weights are torchvision's file, by URL (loaded by
# init_weights when training starts, not when the model is built).
model = dict(
    type='ImageEmbedder',
    backbone=dict(
        type='ResNet',
        depth=50,
        out_indices=(3, ),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='https://download.pytorch.org/models/resnet50-0676ba61.pth')),
    embed_dim=128,
    pooling='avg',
    normalize=True)
