# SSIM-KD appendix Table 2 row "Vanilla" (COCO without annotations): the R50 student learns only from the
# R101 teacher's detections with score > 0.3 (hard output distillation), no feature loss. Paper: 34.6 AP.
# The train2017 images are read through UnlabeledDetDataset: their annotations are never loaded.
_base_ = ['./ssim_retinanet_r101-ms3x_r50_fpn_1x_coco.py']

model = dict(distill_loss=None, pseudo_label=dict(score_thr=0.3))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='UnlabeledDetDataset',
        data_root={{_base_.data_root}},
        ann_file='annotations/instances_train2017.json',  # only its image list is read
        data_prefix=dict(img='train2017/'),
        metainfo_of='CocoDataset',
        pipeline=train_pipeline,
        backend_args={{_base_.backend_args}}))
