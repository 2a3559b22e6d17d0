# LAD (Nguyen et al., WACV 2022), Table 3 row "LAD": a smaller teacher, PAA-R50 (mmdet 1x, 40.4 AP), assigns the
# labels of a PAA-R101 student, COCO 1x; paper 42.6 -> 43.3 AP. Same schedule as the Table 2 configs (mmdet's
# PAA 1x, inherited): SGD lr 0.01, 12 epochs, steps 8 / 11, 500-iteration warm-up, batch 16.
_base_ = ['mmdet::paa/paa_r101_fpn_1x_coco.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/paa/paa_r50_fpn_1x_coco/'
                'paa_r50_fpn_1x_coco_20200821-936edec3.pth')
model = dict(
    _delete_=True,
    type='LADDistiller',
    student={{_base_.model}},
    teacher_cfg='mmdet::paa/paa_r50_fpn_1x_coco.py',
    teacher_ckpt=teacher_ckpt,
    assign_by='teacher',
    # on-device batched EM; 'sklearn' runs mmdet's per-GT CPU fit instead, to compare
    gmm_backend='torch')
# the paper's batch 16 = 8 GPUs x 2 images; on fewer GPUs pass --auto-scale-lr to scale lr from this base
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
