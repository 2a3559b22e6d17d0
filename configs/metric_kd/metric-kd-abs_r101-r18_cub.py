# Table 1 of Yu et al. (CVPR 2019), CUB-200-2011: ML + KD (abs), the absolute teacher (Eq. 4); ResNet-18 student,
# ResNet-101 teacher, lambda = 1.0 (the reference lambda for CUB-200-2011).
_base_ = ['./embedder_r18_triplet_cub.py']
model = dict(
    _delete_=True,
    type='EmbeddingDistiller',
    student={{_base_.model}},
    teacher_cfg='{{fileDirname}}/embedder_r101_triplet_cub.py',
    # the teacher's final checkpoint (train it with its own config first, or point this elsewhere with --cfg-options
    # model.teacher_ckpt=...)
    teacher_ckpt='work_dirs/embedder_r101_triplet_cub/epoch_100.pth',
    distill_loss=dict(type='AbsoluteEmbeddingLoss', loss_weight=1.0))
