# Table 6 of Roth et al. (ICML 2021), "ProxyAnchor" on SOP: the baseline of S2SD, trained alone with the ProxyAnchor
# loss (Kim et al., CVPR 2020: margin 0.1, alpha 32, one proxy per training class at 100 x the base lr) on Kim et al.'s
# default embedding (512-d, global average + max pooling) and optimizer (AdamW, lr 1e-4). NOT the paper's backbone:
# Table 6 uses Kim et al.'s BN-Inception, which mmdet does not have; mmkd keeps the ResNet-50 with frozen BN of the
# other S2SD configs. Weight decay (3e-4), batches (112, 2 per class) and epochs: the S2SD setup.
_base_ = [
    '../_base_/models/embedder_r50_d512_avgmax.py', '../_base_/datasets/sop_s2sd.py',
    '../_base_/schedules/s2sd_adam.py', '../_base_/metric_runtime.py'
]
model = dict(loss=dict(type='ProxyAnchorLoss', num_classes=11318, embedding_size=512, margin=0.1, alpha=32.0))
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4), paramwise_cfg=dict(custom_keys={'loss.proxies': dict(lr_mult=100.0)}))
train_cfg = dict(max_epochs=100)  # supplementary A.2: 100 epochs on SOP
