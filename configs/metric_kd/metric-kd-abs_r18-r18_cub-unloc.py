# Table 6 of Yu et al. (CVPR 2019), CUB-200-2011, unlocalized: ML + KD (abs); the teacher (ResNet-18 trained on
# bounding-box crops) embeds the crop, the student (ResNet-18) the uncropped image of the same sample in the same
# iteration (TeacherView in the pipeline; each view has its own random crop and flip); lambda = 1.0.
_base_ = ['./embedder_r18_triplet_cub.py']
model = dict(
    _delete_=True,
    type='EmbeddingDistiller',
    student={{_base_.model}},
    teacher_cfg='{{fileDirname}}/embedder_r18_triplet_cub-bbox.py',
    # the teacher's final checkpoint (train it with its own config first, or point this elsewhere with --cfg-options
    # model.teacher_ckpt=...)
    teacher_ckpt='work_dirs/embedder_r18_triplet_cub-bbox/epoch_100.pth',
    distill_loss=dict(type='AbsoluteEmbeddingLoss', loss_weight=1.0))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TeacherView',
        pipeline=[
            dict(type='CropToBBox'),
            dict(type='Resize', scale=(256, 256), keep_ratio=False),
            dict(type='RandomCrop', crop_size=224),
            dict(type='RandomFlip', prob=0.5)
        ]),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(type='RandomCrop', crop_size=224),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackEmbeddingInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
