# Toy PAA student (ResNet-18 layout, 16-wide stages) on the toy shapes: the baseline and the student of the toy
# LAD configs (configs/lad/*_toy.py) and of `tools/quickstart.py lad`.
_base_ = [
    '../_base_/models/paa_tiny.py', '../_base_/datasets/toy_shapes_detection.py', '../_base_/schedules/toy_schedule.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=4, max_keep_ckpts=2))
# 10 epochs, not the toy schedule's 12, for the teacher, the baseline and the LAD students alike: the four trainings
# of `tools/quickstart.py lad` then fit in 15 minutes on 2 CPU cores; the lr steps keep their place (8, 11 of 12).
train_cfg = dict(max_epochs=10, val_interval=10)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=10, by_epoch=True, milestones=[7, 9], gamma=0.1)
]
