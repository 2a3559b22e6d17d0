# Table 3 of Yu et al. (CVPR 2019), CUB-200-2011, 50% labelled: ML + KD (abs) on the labelled half only; the teacher is
# the ResNet-101 trained on that half, lambda = 1.0.
_base_ = ['./embedder_r18_triplet_cub-lab50.py']
model = dict(
    _delete_=True,
    type='EmbeddingDistiller',
    student={{_base_.model}},
    teacher_cfg='{{fileDirname}}/embedder_r101_triplet_cub-lab50.py',
    # the teacher's final checkpoint (train it with its own config first, or point this elsewhere with --cfg-options
    # model.teacher_ckpt=...)
    teacher_ckpt='work_dirs/embedder_r101_triplet_cub-lab50/epoch_100.pth',
    distill_loss=dict(type='AbsoluteEmbeddingLoss', loss_weight=1.0))
