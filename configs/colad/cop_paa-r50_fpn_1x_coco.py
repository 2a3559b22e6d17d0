# COP (CoLAD, Nguyen et al., WACV 2022, appendix A), Table 10 row 3 "IoU + COP": mmdet's PAA-R50 1x with its head
# amended with Conditional Objectness Prediction (COPHead, Eq. (4)); the IoU branch is trained and its prediction
# combined with the class probability at inference, as in PAA. Paper: R50 40.4 (PAA) -> 41.6 AP, COCO val.
# Schedule = mmdet's PAA 1x (inherited): SGD lr 0.01, momentum 0.9, weight decay 1e-4, 12 epochs with lr / 10 after
# epochs 8 and 11, 500-iteration linear warm-up, 1333x800 with horizontal flip, batch 16.
_base_ = ['mmdet::paa/paa_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(bbox_head=dict(type='COPHead', iou_branch='train_test'))
# the paper's batch 16 = 8 GPUs x 2 images; on fewer GPUs pass --auto-scale-lr to scale lr from this base
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
