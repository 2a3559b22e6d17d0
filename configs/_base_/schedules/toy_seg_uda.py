# Toy schedule of the domain-adaptation configs: one optimizer per network, the segmentor's as in toy_seg.py, the
# discriminator's Adam 1e-4, betas (0.9, 0.99), with the same poly decay (as in the paper).
_base_ = ['./toy_seg.py']
optim_wrapper = dict(
    _delete_=True,
    constructor='MultiNetworkOptimWrapperConstructor',
    student={{_base_.optim_wrapper}},
    discriminator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.99))))
param_scheduler = dict(_delete_=True, student={{_base_.param_scheduler}}, discriminator={{_base_.param_scheduler}})
# distributed: one DDP per network (each is stepped by its own optimizer)
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)
