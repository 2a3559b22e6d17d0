# Domain-adaptive distillation, BDD100K -> Cityscapes, Table 1 row (vi) of the supplementary, paradigm (a): MSE 0.01 +
# quasi-teacher CE 1.0 (the row's best lambda); everything else as
# dakd-vii-a_deeplabv3plus-r101-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py.
_base_ = ['./dakd-vii-a_deeplabv3plus-r101-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py']
model = dict(
    distill_losses=dict(
        _delete_=True,
        mse=dict(type='PixelMSELoss', loss_weight=0.01),
        ce=dict(type='QuasiTeacherCELoss', loss_weight=1.0)))
