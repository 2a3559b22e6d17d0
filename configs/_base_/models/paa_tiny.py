# A small PAA detector for CPU experiments on the toy data: the data preprocessor, backbone and FPN of
# retinanet_tiny.py (ResNet-18 layout with `base_channels` wide stages) and mmdet's PAA head settings
# (configs/paa/paa_r50_fpn_1x_coco.py).
_base_ = ['./retinanet_tiny.py']
model = dict(
    type='PAA',
    bbox_head=dict(
        _delete_=True,
        type='PAAHead',
        reg_decoded_bbox=True,
        score_voting=True,
        topk=9,
        num_classes=5,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        anchor_generator=dict(
            # one square anchor per location as in mmdet's PAA, 16 px at P3 to 256 px at P7 (COCO: 64 to 1024)
            # for toy objects of 7-204 px (median 37)
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=2,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.3),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.5)),
    train_cfg=dict(
        _delete_=True,
        # PAA's candidates: every anchor with IoU > 0.1 to a GT, before the per-GT GMM split
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.1, neg_iou_thr=0.1, min_pos_iou=0, ignore_iof_thr=-1),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        _delete_=True,
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))
