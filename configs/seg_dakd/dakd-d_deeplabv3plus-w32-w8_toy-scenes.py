# Toy domain-adaptive distillation, paradigm (d): target-domain distillation started from the (c) student. Set
# load_from to the final checkpoint of the (c) run (tools/quickstart.py seg does); the rest as in (a). It continues a
# trained student, so half the schedule (which keeps the quickstart's default run within 15 minutes on 2 cores).
_base_ = ['./dakd-a_deeplabv3plus-w32-w8_toy-scenes.py']
model = dict(distill_domains=('target', ))
max_iters = 200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = dict(
    student=[dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=max_iters, by_epoch=False)],
    discriminator=[dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=max_iters, by_epoch=False)])
default_hooks = dict(checkpoint=dict(interval=max_iters))
