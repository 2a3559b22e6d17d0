# LAD (Nguyen et al., WACV 2022), Table 2 row "LAD": PAA-R101 (mmdet 1x, 42.6 AP) assigns the labels of a PAA-R50
# student, COCO 1x; paper 40.4 -> 41.6 AP. PAA's assignment cost (Eq. 2) is computed from the teacher's
# predictions instead of the student's; the student trains with PAA's own losses on those labels.
# Schedule (Sec. 4.1 = mmdet's PAA 1x, inherited): SGD lr 0.01, momentum 0.9, weight decay 1e-4, 12 epochs with
# lr / 10 after epochs 8 and 11, 500-iteration linear warm-up, 1333x800 with horizontal flip, batch 16.
_base_ = ['mmdet::paa/paa_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/paa/paa_r101_fpn_1x_coco/'
                'paa_r101_fpn_1x_coco_20200821-0a1825a4.pth')
model = dict(
    _delete_=True,
    type='LADDistiller',
    student={{_base_.model}},
    teacher_cfg='mmdet::paa/paa_r101_fpn_1x_coco.py',
    teacher_ckpt=teacher_ckpt,
    assign_by='teacher',
    # on-device batched EM; 'sklearn' runs mmdet's per-GT CPU fit instead, to compare
    gmm_backend='torch')
# the paper's batch 16 = 8 GPUs x 2 images; on fewer GPUs pass --auto-scale-lr to scale lr from this base
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
