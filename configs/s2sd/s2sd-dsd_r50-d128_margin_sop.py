# Table 4 of Roth et al. (ICML 2021), "Margin + DSD" on SOP: the baseline (embedder_r50-d128_margin_sop.py) with one
# 2048-d target branch (Linear-ReLU-Linear on the average-pooled ResNet feature, L2-normalised, trained with its own
# copy of the criterion) whose detached batch similarities the 128-d base embedding learns (KL divergence of
# row-softmaxed cosine similarity matrices, gamma 50, T 1). Inference and export use the base embedding alone. Margin
# loss on SOP: beta 0.9 for S2SD (footnote of Table 4, supplementary A.2), also in the target branches; the baseline
# keeps 1.2.
_base_ = ['./embedder_r50-d128_margin_sop.py']
model = dict(
    _delete_=True,
    type='S2SDEmbedder',
    embedder=dict(_base_.model, loss=dict(_base_.model.loss, beta=0.9)),
    target_dims=(2048, ),
    target_pooling='avg',
    distill_weight=50.0,
    temperature=1.0)
