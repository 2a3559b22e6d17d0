# Table 4 of Roth et al. (ICML 2021), "Margin + DSD" on CUB200-2011: the baseline (embedder_r50-d128_margin_cub.py) with
# one 2048-d target branch (Linear-ReLU-Linear on the average-pooled ResNet feature, L2-normalised, trained with its own
# copy of the criterion) whose detached batch similarities the 128-d base embedding learns (KL divergence of
# row-softmaxed cosine similarity matrices, gamma 50, T 1). Inference and export use the base embedding alone.
_base_ = ['./embedder_r50-d128_margin_cub.py']
model = dict(
    _delete_=True,
    type='S2SDEmbedder',
    embedder=_base_.model,
    target_dims=(2048, ),
    target_pooling='avg',
    distill_weight=50.0,
    temperature=1.0)
