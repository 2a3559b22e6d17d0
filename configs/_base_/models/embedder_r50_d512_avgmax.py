# The embedding of Kim et al.'s ProxyAnchor setup (CVPR 2020), used by S2SD's Table 6: 512-d, global average + max
# pooling, L2-normalised. Kim et al. use a BN-Inception backbone, which mmdet does not have: mmkd keeps S2SD's
# ImageNet ResNet-50 with frozen BatchNorm (embedder_r50_d128.py), so the backbone differs from the paper's Table 6.
_base_ = ['./embedder_r50_d128.py']
model = dict(embed_dim=512, pooling='avg_max')
