# Toy domain-adaptive distillation, paradigm (a) source-domain distillation: the adapted 8-wide student learns from
# the adapted 32-wide teacher (adaptseg_deeplabv3plus-w32_toy-scenes.py) with KL 0.1 + MSE 0.01 + quasi-teacher CE 1.0
# (Table 1 row (vii)) on the decode head, and output-space adversarial adaptation. Set teacher_ckpt
# (tools/quickstart.py seg sets it to its teacher run's checkpoint).
_base_ = ['../_base_/datasets/toy_scenes_uda.py', '../_base_/schedules/toy_seg_uda.py']
model = dict(
    type='DomainAdaptiveDistiller',
    student='{{fileDirname}}/deeplabv3plus-w8_toy-scenes-source.py',
    teacher_cfg='{{fileDirname}}/adaptseg_deeplabv3plus-w32_toy-scenes.py',
    teacher_ckpt=None,
    distill_losses=dict(
        kl=dict(type='PixelKLLoss', loss_weight=0.1),
        mse=dict(type='PixelMSELoss', loss_weight=0.01),
        ce=dict(type='QuasiTeacherCELoss', loss_weight=1.0)),
    distill_domains=('source', ),
    discriminator=dict(type='OutputSpaceDiscriminator', base_channels=16, num_convs=4),
    adv_weights=dict(decode_head=1e-3, auxiliary_head=2e-4))
