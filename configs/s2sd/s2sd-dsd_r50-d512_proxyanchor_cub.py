# Table 6 of Roth et al. (ICML 2021), "ProxyAnchor + DSD" on CUB200-2011: the baseline
# (embedder_r50-d512_proxyanchor_cub.py) with one 2048-d target branch (Linear-ReLU-Linear on the average-pooled ResNet
# feature, L2-normalised, trained with its own copy of the criterion) whose detached batch similarities the 512-d base
# embedding learns (KL divergence of row-softmaxed cosine similarity matrices, gamma 50, T 1). Inference and export use
# the base embedding alone. The target branch pools by average only (no A variant in Table 6) while the base embedding
# keeps Kim et al.'s average + max pooling.
_base_ = ['./embedder_r50-d512_proxyanchor_cub.py']
model = dict(
    _delete_=True,
    type='S2SDEmbedder',
    embedder=_base_.model,
    target_dims=(2048, ),
    target_pooling='avg',
    distill_weight=50.0,
    temperature=1.0)
