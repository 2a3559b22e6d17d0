# Table 5 of Yu et al. (CVPR 2019), CUB-200-2011: ML + KD (rel), the relative teacher (Eq. 5-6) with a width-0.25
# MobileNet student and the ResNet-101 teacher, lambda = 0.3.
_base_ = ['./embedder_mbv2-0.25_triplet_cub.py']
model = dict(
    _delete_=True,
    type='EmbeddingDistiller',
    student={{_base_.model}},
    teacher_cfg='{{fileDirname}}/embedder_r101_triplet_cub.py',
    # the teacher's final checkpoint (train it with its own config first, or point this elsewhere with --cfg-options
    # model.teacher_ckpt=...)
    teacher_ckpt='work_dirs/embedder_r101_triplet_cub/epoch_100.pth',
    distill_loss=dict(type='RelativeDistanceLoss', loss_weight=0.3))
