# Domain-adaptive distillation, BDD100K -> Cityscapes, paradigm (d) target-domain distillation initialised from the
# (c) student: target-domain distillation (dakd-vii-b) started from the final checkpoint of the (c) run (student and
# discriminators), Table 1 row (vii) losses. Train
# dakd-vii-c_deeplabv3plus-r101-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py first.
_base_ = ['./dakd-vii-b_deeplabv3plus-r101-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py']
load_from = 'work_dirs/dakd-vii-c_deeplabv3plus-r101-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024/iter_40000.pth'
