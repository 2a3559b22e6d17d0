# CUB200-2011 in the setup of S2SD (Roth et al., ICML 2021, supplementary A.1-A.2, after Roth et al., ICML 2020):
# classes 1-100 train, 101-200 test. Training: a random resized crop of the original image to 224 x 224 (scale
# 0.08-1, aspect ratio 3/4-4/3, as torchvision's) and a horizontal flip with p = 0.5; test: the shorter side resized to
# 256 and the 224 centre crop. Batches of 112 images. The paper gives no sampling: 2 images per class (56 classes a
# batch) is the default of the reference setup of Roth et al. (ICML 2020), which S2SD follows.
_base_ = ['./cub200_retrieval.py']
batch_size = 112
instances_per_class = 2
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', size=224),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackEmbeddingInputs')
]
# keep_ratio with a long-side bound no image reaches: the shorter side becomes 256 (torchvision's Resize(256))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(100000, 256), keep_ratio=True),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackEmbeddingInputs')
]
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(batch_size=batch_size, instances_per_class=instances_per_class),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
