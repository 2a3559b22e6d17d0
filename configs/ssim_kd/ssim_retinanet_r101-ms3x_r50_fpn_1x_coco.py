# SSIM-KD (de Rijk et al.), appendix Table 1 row "SSIM": RetinaNet R101 (mmdet ms-3x, 41.0 AP) -> RetinaNet R50,
# COCO 1x. SSIM between min-max normalised teacher and student FPN outputs P3-P7, lambda = 2
# (the paper's best range is 2..4). Paper: 36.4 -> 40.1 AP.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

teacher_ckpt = ('https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_fpn_mstrain_3x_coco/'
                'retinanet_r101_fpn_mstrain_3x_coco_20210720_214650-7ee888e0.pth')
model = dict(
    _delete_=True,
    type='DetFeatureDistiller',
    student={{_base_.model}},
    teacher_cfg='mmdet::retinanet/retinanet_r101_fpn_ms-640-800-3x_coco.py',
    teacher_ckpt=teacher_ckpt,
    distill_loss=dict(type='SSIMLoss', loss_weight=2.0, normalize='minmax'),
    student_module='neck',
    teacher_module='neck')
