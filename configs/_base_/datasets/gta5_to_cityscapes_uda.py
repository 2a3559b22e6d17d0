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
# Everything else as in bdd100k_to_cityscapes_uda.py: the same pipelines, target and evaluation.
_base_ = ['./bdd100k_to_cityscapes_uda.py']
train_dataloader = dict(
    dataset=dict(
        source=dict(
            _delete_=True,
            type='GTA5Dataset',
            data_root='data/gta5/',
            data_prefix=dict(img_path='images', seg_map_path='labels'),
            pipeline={{_base_.source_pipeline}})))
