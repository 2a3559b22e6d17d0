# CoLAD (Nguyen et al., WACV 2022), Table 6 row "Teacher PAA-R50, init No, CoLAD" (= Table 11 row R50 -> R18, CoLAD):
# PAA-R50 and PAA-R18, both from ImageNet, train together for 1x; at every iteration the network whose candidates'
# costs have the higher std/mean (per GT box and FPN level) assigns the labels of both.
# Paper: PAA-R18 (validated here) 35.8 -> 36.5 AP.
# Schedule, for each network (Sec. 4.1 = mmdet's PAA 1x): SGD lr 0.01, momentum 0.9, weight decay 1e-4, 12 epochs
# with lr / 10 after epochs 8 and 11, 500-iteration linear warm-up, 1333x800 with horizontal flip, batch 16.
_base_ = ['./paa_r18_fpn_1x_coco.py']

model = dict(
    _delete_=True,
    type='CoLAD',
    # neither is pretrained: the larger network is the initial teacher (it wins ties; Sec. 4.2)
    networks=dict(r50='mmdet::paa/paa_r50_fpn_1x_coco.py', r18={{_base_.model}}),
    switch=dict(type='StdMeanCriterion', granularity='gt_level'),
    predict_network='r18',
    gmm_backend='torch')

_optim = {{_base_.optim_wrapper}}
_schedule = {{_base_.param_scheduler}}
optim_wrapper = dict(_delete_=True, constructor='MultiNetworkOptimWrapperConstructor', r50=_optim, r18=_optim)
param_scheduler = dict(_delete_=True, r50=_schedule, r18=_schedule)
# distributed: one DDP per network (CoLAD's train_step steps each network with its own optimizer)
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)
# the switch scalars (switch.rho.*, switch.share.*) averaged over the logger's window like the losses (mmengine
# logs other scalars as their value at the logging iteration)
log_processor = dict(mean_pattern=r'.*(loss|time|data_time|grad_norm|switch).*')
