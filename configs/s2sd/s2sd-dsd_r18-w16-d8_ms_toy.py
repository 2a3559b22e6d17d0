# Toy DSD of `tools/quickstart.py s2sd`: the toy baseline (embedder_r18-w16-d8_ms_toy.py) with one 512-d target
# branch trained with its own multi-similarity loss, and the 8-d base embedding distilled from its batch similarities
# (T 1, targets detached). Same schedule; the quickstart gives it the baseline's seed.
# gamma = 5, not the paper's 50: the paper fine-tunes an ImageNet-pretrained ResNet-50 with lr 1e-5, while the toy
# networks learn from random weights with lr 1e-3, where the similarities of a target branch that has not learnt yet
# are noise; with gamma 50 the KL term dominated the backbone's gradient and the 8-d DSD reached 23.9 R@1 against the
# baseline's 42.2 (seed 0, 30 epochs); with gamma 5, 40.8.
_base_ = ['./embedder_r18-w16-d8_ms_toy.py']
_embedder = {{_base_.model}}
model = dict(
    _delete_=True,
    type='S2SDEmbedder',
    embedder=_embedder,
    target_dims=(512, ),
    target_pooling='avg',
    distill_weight=5.0,
    temperature=1.0)
