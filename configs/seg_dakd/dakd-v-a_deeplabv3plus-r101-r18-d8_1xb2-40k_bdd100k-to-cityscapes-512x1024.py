# Domain-adaptive distillation, BDD100K -> Cityscapes, Table 1 row (v) of the supplementary, paradigm (a): KL 0.1 +
# quasi-teacher CE 1.0 (the row's best lambda); everything else as
# dakd-vii-a_deeplabv3plus-r101-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py.
_base_ = ['./dakd-vii-a_deeplabv3plus-r101-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py']
model = dict(
    distill_losses=dict(
        _delete_=True,
        kl=dict(type='PixelKLLoss', loss_weight=0.1),
        ce=dict(type='QuasiTeacherCELoss', loss_weight=1.0)))
