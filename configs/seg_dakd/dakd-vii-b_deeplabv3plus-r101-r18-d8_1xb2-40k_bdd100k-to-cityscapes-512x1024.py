# Domain-adaptive distillation, BDD100K -> Cityscapes, paradigm (b) target-domain distillation, with the losses of
# Table 1 row (vii) (KL 0.1 + MSE 0.01 + quasi-teacher CE 1.0); everything else as
# dakd-vii-a_deeplabv3plus-r101-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py.
_base_ = ['./dakd-vii-a_deeplabv3plus-r101-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py']
model = dict(distill_domains=('target', ))
