# Optimisation of the segmentation network in domain-adaptive distillation (Kothandaraman et al., WACV 2021 workshops,
# supplementary Sec. 1): SGD with Nesterov momentum 0.9, weight decay 1e-4, lr 2.5e-4 with poly decay (power 0.9,
# down to 0), batch 2 on one GPU. The paper does not give its number of iterations: 40k, mmseg's Cityscapes schedule
# (validation and a checkpoint every 4k iterations). Used as is by the source-only configs of configs/seg_dakd.
_base_ = ['mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_40k.py']
max_iters = 40000
optim_wrapper = dict(optimizer=dict(type='SGD', lr=2.5e-4, momentum=0.9, nesterov=True, weight_decay=1e-4))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=4000)
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)
