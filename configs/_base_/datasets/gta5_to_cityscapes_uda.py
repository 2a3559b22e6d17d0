# GTA5 -> Cityscapes, the synthetic-to-real case of domain-adaptive distillation: a labelled GTA5 batch (mmkd's
# GTA5Dataset: label ids mapped to the 19 Cityscapes train ids) and an unlabelled Cityscapes train batch per iteration
# (TwoDomainDataset, InfiniteSampler); validation and test on Cityscapes val with IoUMetric (mmseg's cityscapes.py, at
# 2048 x 1024). Official layouts:
#   data/gta5/images/00001.png ... 24966.png, data/gta5/labels/00001.png ... 24966.png (Cityscapes label ids);
#   data/cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png,
#   data/cityscapes/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png (made by mmseg's cityscapes converter).
# Scale: AdaptSegNet (Tsai et al., CVPR 2018) trained on whole GTA5 frames resized to 1280 x 720 and Cityscapes frames
# resized to 1024 x 512, both at about half their size, and tested at 1024 x 512. Here Cityscapes val is tested at its
# full 2048 x 1024 (mmseg), so both domains are trained at that scale: each frame is resized to fit 2048 x 1024 times a
# random ratio in [0.5, 2], then cropped to 512 x 1024 (mmseg's Cityscapes training pipeline). A 1914 x 1052 GTA5
# frame, about a Cityscapes frame's size, becomes 1863 x 1024: the crops of both domains, which the output-space
# discriminator compares, show street scenes at about the same scale. A few GTA5 label files do not have their image's
# size (see GTA5Dataset): list the frames to train on in an ann_file if your copy has such frames.
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
            type='GTA5Dataset',
            data_root='data/gta5/',
            data_prefix=dict(img_path='images', seg_map_path='labels'),
            pipeline=source_pipeline),
        target=dict(
            type='CityscapesDataset',
            data_root='data/cityscapes/',
            data_prefix=dict(img_path='leftImg8bit/train'),
            pipeline=target_pipeline)))
