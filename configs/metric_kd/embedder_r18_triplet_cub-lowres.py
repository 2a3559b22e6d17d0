# Table 6 of Yu et al. (CVPR 2019), CUB-200-2011, low resolution: the ResNet-18 student trained and tested on
# low-quality images (downsampled to 50 x 50 and upsampled back to 224 x 224). Its teacher is the ResNet-18 trained on
# the high-quality images (embedder_r18_triplet_cub.py).
_base_ = ['./embedder_r18_triplet_cub.py']
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(type='RandomCrop', crop_size=224),
    dict(type='RandomFlip', prob=0.5),
    dict(type='TeacherView', pipeline=[]),  # the high-quality crop, for a teacher (ignored by a model alone)
    dict(type='LowResolution', size=50),  # Sec. 5.4: down to 50 x 50 and back up to 224 x 224
    dict(type='PackEmbeddingInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(type='CenterCrop', crop_size=224),
    dict(type='LowResolution', size=50),
    dict(type='PackEmbeddingInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
