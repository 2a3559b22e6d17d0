# Table 6 of Yu et al. (CVPR 2019), CUB-200-2011, low resolution: ML + KD (abs); the teacher (ResNet-18, high-quality
# images) embeds the high-quality crop, the student (ResNet-18) the same crop at low resolution, in the same iteration
# (TeacherView in the pipeline); lambda = 1.0.
_base_ = ['./embedder_r18_triplet_cub-lowres.py']
model = dict(
    _delete_=True,
    type='EmbeddingDistiller',
    student={{_base_.model}},
    teacher_cfg='{{fileDirname}}/embedder_r18_triplet_cub.py',
    # the teacher's final checkpoint (train it with its own config first, or point this elsewhere with --cfg-options
    # model.teacher_ckpt=...)
    teacher_ckpt='work_dirs/embedder_r18_triplet_cub/epoch_100.pth',
    distill_loss=dict(type='AbsoluteEmbeddingLoss', loss_weight=1.0))
