# CUB-200-2011 for retrieval (Yu et al., CVPR 2019, Sec. 5.1, after Oh Song et al., CVPR 2016): classes 1-100 train,
# 101-200 test; resize to 256 x 256, random 224 crop and horizontal flip; test: the 224 centre crop. Batches of 32
# images: 4 classes x 8 images (ClassBalancedSampler). data_root: the official CUB_200_2011 folder.
dataset_type = 'CUB200Dataset'
data_root = 'data/CUB_200_2011/'
batch_size = 32
instances_per_class = 8
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(type='RandomCrop', crop_size=224),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackEmbeddingInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackEmbeddingInputs')
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='ClassBalancedSampler', batch_size=batch_size, instances_per_class=instances_per_class),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='RetrievalMetric', ks=(1, 2, 4, 8, 16), measures=('recall', 'map_at_r', 'nmi'))
test_evaluator = val_evaluator
