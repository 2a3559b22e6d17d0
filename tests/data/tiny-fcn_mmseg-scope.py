# A small mmseg segmentor (test-only): test_configs.py builds a config of every scope, and configs/ holds no
# mmseg config yet.
default_scope = 'mmseg'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='ResNetV1c', depth=18, stem_channels=16, base_channels=16, out_indices=(3, )),
    decode_head=dict(
        type='FCNHead',
        in_channels=128,
        channels=32,
        num_convs=1,
        num_classes=4,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
