# Intermediate-map losses of the metric-learning distillation configs (Yu et al., CVPR 2019, Eq. 9 and 12), as lists
# that a config puts in its distiller: model = dict(feature_losses={{_base_.hint_r101_r18}}).
#
# Hints (Eq. 8-9): each ResNet-18 student block output against the ResNet-101 teacher's last-but-one layer of the same
# block (footnote 2 of the paper): the 3x3 conv of the block's last bottleneck, recorded at its BN, whose output
# mmdet's in-place ReLU rectifies; equal channels and sizes. mu = loss_weight, not given in the paper: mmkd's choice.
hint_r101_r18 = [
    dict(
        student=f'backbone.layer{i}',
        teacher=f'backbone.layer{i}.{last}.bn2',
        loss=dict(type='HintLoss', loss_weight=0.01)) for i, last in ((1, 2), (2, 3), (3, 22), (4, 2))
]
# Attention transfer (Eq. 10-11, p = 2) between the block outputs of student and teacher (any channels, equal sizes).
# kappa = loss_weight, not given in the paper: mmkd's choice.
attention_resnet = [
    dict(
        student=f'backbone.layer{i}',
        teacher=f'backbone.layer{i}',
        loss=dict(type='AttentionTransferLoss', loss_weight=1.0)) for i in range(1, 5)
]
