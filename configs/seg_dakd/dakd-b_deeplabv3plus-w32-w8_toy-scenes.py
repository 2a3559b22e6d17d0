# Toy domain-adaptive distillation, paradigm (b) target-domain distillation; the rest as in (a): the 8-wide student
# learns from the adapted 32-wide teacher with the losses of Table 1 row (vii) and adversarial adaptation.
_base_ = ['./dakd-a_deeplabv3plus-w32-w8_toy-scenes.py']
model = dict(distill_domains=('target', ))
