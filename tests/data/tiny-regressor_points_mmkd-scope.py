# A config of mmkd's own scope (see tests/toy_mmkd_scope.py): every type below is registered only in the 'mmkd'
# child registries, so it builds only when default_scope='mmkd' reaches them.
default_scope = 'mmkd'
custom_imports = dict(imports=['mmkd', 'tests.toy_mmkd_scope'], allow_failed_imports=False)
model = dict(type='TinyRegressor')
pipeline = [dict(type='ShiftTarget', shift=1.0)]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='TinyPointsDataset', num=8, seed=0, pipeline=pipeline))
test_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='ReversedSampler'),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='TinyPointsDataset', num=6, seed=1, pipeline=pipeline))
test_evaluator = dict(type='TinyMSEMetric')
train_cfg = dict(by_epoch=True, max_epochs=2)
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))
default_hooks = dict(logger=dict(type='LoggerHook', interval=1), checkpoint=dict(type='CheckpointHook', interval=1))
randomness = dict(seed=0)
