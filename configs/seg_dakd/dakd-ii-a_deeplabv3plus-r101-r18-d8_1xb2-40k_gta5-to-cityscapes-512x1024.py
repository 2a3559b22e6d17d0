# Domain-adaptive distillation, GTA5 -> Cityscapes, Table 1 row (ii) of the supplementary, paradigm (a): MSE 0.01 (the
# row's best lambda); everything else as dakd-vii-a_deeplabv3plus-r101-r18-d8_1xb2-40k_gta5-to-cityscapes-512x1024.py.
# The paper ran Table 1 on BDD100K -> Cityscapes only: the GTA5 configs use the same settings.
_base_ = ['./dakd-vii-a_deeplabv3plus-r101-r18-d8_1xb2-40k_gta5-to-cityscapes-512x1024.py']
model = dict(distill_losses=dict(_delete_=True, mse=dict(type='PixelMSELoss', loss_weight=0.01)))
