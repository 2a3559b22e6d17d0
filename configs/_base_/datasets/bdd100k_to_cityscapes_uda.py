# BDD100K -> Cityscapes, the real-to-real case of domain-adaptive distillation (the paper's Table 1): a labelled
# BDD100K batch and an unlabelled Cityscapes train batch per iteration (TwoDomainDataset, InfiniteSampler), 19
# Cityscapes classes in both; validation and test on Cityscapes val with IoUMetric (mmseg's cityscapes.py, at 2048 x
# 1024). Official layouts (mmseg's dataset preparation guide):
#   data/bdd100k/images/10k/{train,val}/*.jpg, data/bdd100k/labels/sem_seg/masks/{train,val}/*.png (train ids);
#   data/cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png,
#   data/cityscapes/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png (made by mmseg's cityscapes converter).
# Scale: both domains are resized to fit 2048 x 1024 times a random ratio in [0.5, 2], then cropped to 512 x 1024
# (mmseg's Cityscapes training pipeline, which mmseg's bdd100k.py also uses): a 1280 x 720 BDD100K frame is enlarged
# x1.42 to the height of a Cityscapes frame (1820 x 1024), so that the crops of both domains, which the output-space
# discriminator compares, show street scenes at about the same scale, the scale at which Cityscapes val is tested.
_base_ = ['mmseg::_base_/datasets/cityscapes.py']
crop_size = (512, 1024)
source_pipeline = {{_base_.train_pipeline}}
# the target's labels are never read: no LoadAnnotations, and no cat_max_ratio in the crop (it reads the labels)
target_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='TwoDomainDataset',
        source=dict(
            type='BDD100KDataset',
            data_root='data/bdd100k/',
            data_prefix=dict(img_path='images/10k/train', seg_map_path='labels/sem_seg/masks/train'),
            pipeline=source_pipeline),
        target=dict(
            type='CityscapesDataset',
            data_root='data/cityscapes/',
            data_prefix=dict(img_path='leftImg8bit/train'),
            pipeline=target_pipeline)))
