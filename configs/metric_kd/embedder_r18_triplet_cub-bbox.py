# Table 6 of Yu et al. (CVPR 2019), CUB-200-2011, unlocalized: the ResNet-18 teacher trained and tested on images
# cropped to their bounding boxes. Its student sees the uncropped images (embedder_r18_triplet_cub.py alone).
_base_ = ['./embedder_r18_triplet_cub.py']
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CropToBBox'),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(type='RandomCrop', crop_size=224),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackEmbeddingInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CropToBBox'),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackEmbeddingInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
