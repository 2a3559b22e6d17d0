# Optimisation of the domain-adaptation and distillation configs of configs/seg_dakd: one optimizer per network
# (MultiNetworkOptimWrapperConstructor), the segmentation network's as in seg_dakd_40k.py, the discriminators' Adam
# with lr 1e-4 and betas (0.9, 0.99) under the same poly decay (supplementary Sec. 1; it prints the lr as "10e-4",
# read as AdaptSegNet's 1e-4, the value the paper's discriminator comes from; the betas are AdaptSegNet's too).
_base_ = ['./seg_dakd_40k.py']
optim_wrapper = dict(
    _delete_=True,
    constructor='MultiNetworkOptimWrapperConstructor',
    student={{_base_.optim_wrapper}},
    discriminator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.99))))
param_scheduler = dict(_delete_=True, student={{_base_.param_scheduler}}, discriminator={{_base_.param_scheduler}})
# distributed: one DDP per network (each is stepped by its own optimizer)
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)
