# Toy domain-adaptive distillation, paradigm (d): target-domain distillation started from the (c) student. Set
# load_from to the final checkpoint of the (c) run (tools/quickstart.py seg does); the rest as in (a).
_base_ = ['./dakd-a_deeplabv3plus-w32-w8_toy-scenes.py']
model = dict(distill_domains=('target', ))
