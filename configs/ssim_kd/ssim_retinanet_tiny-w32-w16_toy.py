# SSIM feature distillation on the toy shapes: RetinaNet 32-wide teacher -> 16-wide student,
# every FPN level, SSIM on min-max normalised maps, lambda = 2.
_base_ = ['../toy/retinanet_tiny-w16_toy.py']

model = dict(
    _delete_=True,
    type='DetFeatureDistiller',
    student={{_base_.model}},
    teacher_cfg='{{fileDirname}}/../toy/retinanet_tiny-w32_toy.py',
    teacher_ckpt='work_dirs/retinanet_tiny-w32_toy/epoch_12.pth',
    distill_loss=dict(type='SSIMLoss', loss_weight=2.0, normalize='minmax'),
    student_module='neck',
    teacher_module='neck')
