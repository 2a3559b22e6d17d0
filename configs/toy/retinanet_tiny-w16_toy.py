# Toy RetinaNet student (ResNet-18 layout, 16-wide stages) on the toy shapes: the baseline and the student of
# the toy distillation configs (configs/<method>/*_toy*.py) and of tools/quickstart.py.
_base_ = [
    '../_base_/models/retinanet_tiny.py', '../_base_/datasets/toy_shapes_detection.py',
    '../_base_/schedules/toy_schedule.py', 'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=4, max_keep_ckpts=2))
