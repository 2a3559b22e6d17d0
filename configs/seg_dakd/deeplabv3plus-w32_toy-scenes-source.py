# Toy 32-wide DeepLabV3+ trained on the source domain alone and tested on the target: the domain gap (no adaptation).
# Its model is the segmentor of the toy adaptation and distillation configs.
_base_ = [
    '../_base_/models/toy_deeplabv3plus.py', '../_base_/datasets/toy_scenes_source.py', '../_base_/schedules/toy_seg.py'
]
model = dict(
    backbone=dict(stem_channels=32, base_channels=32),
    decode_head=dict(in_channels=256, channels=64, c1_in_channels=32, c1_channels=16),
    auxiliary_head=dict(in_channels=128, channels=32))
