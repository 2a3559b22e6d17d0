# Label Assignment Distillation on the toy shapes: the 16-wide toy PAA learns from the labels that the 32-wide toy
# PAA teacher's PAA assignment (GMM split of the teacher's costs) gives its anchors; no other teacher signal.
_base_ = ['../toy/paa_tiny-w16_toy.py']

model = dict(
    _delete_=True,
    type='LADDistiller',
    student={{_base_.model}},
    teacher_cfg='{{fileDirname}}/../toy/paa_tiny-w32_toy.py',
    teacher_ckpt='work_dirs/paa_tiny-w32_toy/epoch_10.pth',
    assign_by='teacher')
