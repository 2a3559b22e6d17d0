# CoLAD (Nguyen et al., WACV 2022), Table 5 row "CoLAD (1x), init No / No" (= Table 11 row R101 -> R50, CoLAD):
# PAA-R101 and PAA-R50, both from ImageNet (no COCO teacher), train together for 1x; at every iteration the network
# whose candidates' costs have the higher std/mean (per GT box and FPN level) assigns the labels of both.
# Paper, COCO val: PAA-R50 (validated here) 40.4 -> 41.3 AP; PAA-R101 42.6 -> 43.1 AP (test it with
# --cfg-options model.predict_network=r101).
# Schedule, for each network (Sec. 4.1 = mmdet's PAA 1x): SGD lr 0.01, momentum 0.9, weight decay 1e-4, 12 epochs
# with lr / 10 after epochs 8 and 11, 500-iteration linear warm-up, 1333x800 with horizontal flip, batch 16.
_base_ = ['mmdet::paa/paa_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='CoLAD',
    # neither is pretrained: the larger network is the initial teacher (it wins ties; Sec. 4.2)
    networks=dict(r101='mmdet::paa/paa_r101_fpn_1x_coco.py', r50={{_base_.model}}),
    switch=dict(type='StdMeanCriterion', granularity='gt_level'),
    predict_network='r50',
    gmm_backend='torch')

_optim = {{_base_.optim_wrapper}}
_schedule = {{_base_.param_scheduler}}
optim_wrapper = dict(_delete_=True, constructor='MultiNetworkOptimWrapperConstructor', r101=_optim, r50=_optim)
param_scheduler = dict(_delete_=True, r101=_schedule, r50=_schedule)
# the paper's batch 16 = 8 GPUs x 2 images; on fewer GPUs pass --auto-scale-lr to scale lr from this base
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
# distributed: one DDP per network (CoLAD's train_step steps each network with its own optimizer)
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)
# the switch scalars (switch.rho.*, switch.share.*) averaged over the logger's window like the losses (mmengine
# logs other scalars as their value at the logging iteration)
log_processor = dict(mean_pattern=r'.*(loss|time|data_time|grad_norm|switch).*')
