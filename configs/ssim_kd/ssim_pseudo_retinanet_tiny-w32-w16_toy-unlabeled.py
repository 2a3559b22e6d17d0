# Toy variant of the SSIM-KD unlabeled-data setting (appendix Table 2): the toy train images are read without
# their annotations; the 16-wide student learns from the 32-wide teacher's detections with score > 0.3 plus
# SSIM on the FPN levels. Set model.distill_loss=None for the pseudo-label-only ("vanilla") row.
# The images must exist first: python tools/make_toy_data.py (or train any other toy config once).
_base_ = ['./ssim_retinanet_tiny-w32-w16_toy.py']

model = dict(pseudo_label=dict(score_thr=0.3))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(256, 256), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='UnlabeledDetDataset',
        data_root={{_base_.data_root}},
        ann_file='annotations/instances_train.json',  # only its image list is read
        data_prefix=dict(img='train/'),
        metainfo_of='ToyShapesDataset',
        pipeline=train_pipeline,
        backend_args={{_base_.backend_args}}))
