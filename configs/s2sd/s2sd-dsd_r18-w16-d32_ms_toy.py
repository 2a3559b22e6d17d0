# Toy DSD of `tools/quickstart.py s2sd`: the toy baseline (embedder_r18-w16-d32_ms_toy.py) with one 512-d target
# branch (16 x the base dimension, as the paper's 2048 for 128) trained with its own multi-similarity loss, and the
# base embedding distilled from its batch similarities (gamma 50, T 1, targets detached). Same schedule and seed.
_base_ = ['./embedder_r18-w16-d32_ms_toy.py']
_embedder = {{_base_.model}}
model = dict(
    _delete_=True,
    type='S2SDEmbedder',
    embedder=_embedder,
    target_dims=(512, ),
    target_pooling='avg',
    distill_weight=50.0,
    temperature=1.0)
