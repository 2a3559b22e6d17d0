# Toy scenes, source only: training on the labelled source train split alone (the "no adaptation" baseline that
# shows the domain gap); validation and test on the labelled target val split, as in toy_scenes_uda.py.
_base_ = ['./toy_scenes_uda.py']
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ToyScenesDataset',
        data_root={{_base_.data_root}},
        data_prefix=dict(img_path='source/images/train', seg_map_path='source/labels/train'),
        pipeline={{_base_.source_pipeline}}))
