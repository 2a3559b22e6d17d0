# Runtime of the metric-learning configs (configs/metric_kd, configs/s2sd): mmkd's own scope, since the embedding
# models, retrieval datasets, sampler and metric have no host library (mmdet / mmseg). The retrieval metric of the
# test split is the validation metric; the best checkpoint by Recall@1 is kept.
default_scope = 'mmkd'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2, save_best='retrieval/R@1', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(
    cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0), dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
# the ClassBalancedSampler's batch_size must be the dataloader's: checked before training. SyncBuffersHook averages the
# BN statistics of the ranks after each epoch: each rank's own batches would otherwise leave each its own statistics,
# the checkpoint rank 0's, and a distributed validation a mix that no checkpoint holds.
custom_hooks = [dict(type='SamplerBatchCheckHook'), dict(type='SyncBuffersHook')]
log_level = 'INFO'
load_from = None
resume = False
