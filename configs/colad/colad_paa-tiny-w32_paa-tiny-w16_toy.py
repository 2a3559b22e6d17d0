# CoLAD on the toy shapes: the 32-wide and the 16-wide toy PAA detectors train together from scratch, each with its
# own optimizer and schedule; at every iteration the network whose costs have the higher std/mean (per GT box and
# FPN level) assigns the labels of both. The pair of `tools/quickstart.py colad`; the 16-wide network is validated.
_base_ = ['../toy/paa_tiny-w16_toy.py']

model = dict(
    _delete_=True,
    type='CoLAD',
    networks=dict(w32='{{fileDirname}}/../toy/paa_tiny-w32_toy.py', w16='{{fileDirname}}/../toy/paa_tiny-w16_toy.py'),
    switch=dict(type='StdMeanCriterion', granularity='gt_level'),
    predict_network='w16')

# each network: the toy schedule of its own config (AdamW, warm-up, steps at epochs 7 and 9 of 10)
_optim = {{_base_.optim_wrapper}}
_schedule = {{_base_.param_scheduler}}
optim_wrapper = dict(_delete_=True, constructor='MultiNetworkOptimWrapperConstructor', w32=_optim, w16=_optim)
param_scheduler = dict(_delete_=True, w32=_schedule, w16=_schedule)
# distributed: one DDP per network (CoLAD's train_step steps each network with its own optimizer)
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)
# the switch scalars (switch.rho.*, switch.share.*) averaged over the logger's window like the losses (mmengine
# logs other scalars as their value at the logging iteration)
log_processor = dict(mean_pattern=r'.*(loss|time|data_time|grad_norm|switch).*')
