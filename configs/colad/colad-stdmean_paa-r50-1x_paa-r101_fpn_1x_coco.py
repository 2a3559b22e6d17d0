# CoLAD (Nguyen et al., WACV 2022), Table 4 row "CoLAD - Std/Mean" (PAA-R101 train 1x), the same run as Table 5 row
# "CoLAD (1x), PAA-R50 init 1x, PAA-R101 init No": PAA-R50 starts from mmdet's COCO 1x checkpoint (40.4 AP), PAA-R101
# from ImageNet; they train together for 1x and at every iteration the network whose pre-assigned candidates' costs
# have the higher std/mean (Eq. 3, per GT box and FPN level as in the official code) assigns the labels of both.
# Paper, COCO val: PAA-R101 (validated here) 42.6 -> 43.3 AP; PAA-R50 40.4 -> 42.6 AP (test it with
# --cfg-options model.predict_network=r50). LAD with the same fixed teacher: configs/lad/lad_paa-r50_paa-r101_*.
# Schedule, for each network (Sec. 4.1 = mmdet's PAA 1x): SGD lr 0.01, momentum 0.9, weight decay 1e-4, 12 epochs
# with lr / 10 after epochs 8 and 11, 500-iteration linear warm-up, 1333x800 with horizontal flip, batch 16.
_base_ = ['mmdet::paa/paa_r101_fpn_1x_coco.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

r50_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/paa/paa_r50_fpn_1x_coco/'
            'paa_r50_fpn_1x_coco_20200821-936edec3.pth')
model = dict(
    _delete_=True,
    type='CoLAD',
    # the first network is the initial teacher (it wins ties): the pretrained one (Sec. 4.2)
    networks=dict(r50='mmdet::paa/paa_r50_fpn_1x_coco.py', r101={{_base_.model}}),
    checkpoints=dict(r50=r50_ckpt),
    switch=dict(type='StdMeanCriterion', granularity='gt_level'),
    predict_network='r101',
    gmm_backend='torch')

_optim = {{_base_.optim_wrapper}}
_schedule = {{_base_.param_scheduler}}
optim_wrapper = dict(_delete_=True, constructor='MultiNetworkOptimWrapperConstructor', r50=_optim, r101=_optim)
param_scheduler = dict(_delete_=True, r50=_schedule, r101=_schedule)
# the paper's batch 16 = 8 GPUs x 2 images; on fewer GPUs pass --auto-scale-lr to scale lr from this base
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
# distributed: one DDP per network (CoLAD's train_step steps each network with its own optimizer)
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)
# the switch scalars (switch.rho.*, switch.share.*) averaged over the logger's window like the losses (mmengine
# logs other scalars as their value at the logging iteration)
log_processor = dict(mean_pattern=r'.*(loss|time|data_time|grad_norm|switch).*')
