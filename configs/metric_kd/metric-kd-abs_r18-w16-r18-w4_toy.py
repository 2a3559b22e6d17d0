# Toy ML + KD (abs) of `tools/quickstart.py metric`: the 4-wide ResNet-18 student learns from the 16-wide teacher's
# embeddings with the absolute teacher (Eq. 4), lambda = 1.0 (the paper's CUB lambda), on the student's schedule and
# seed.
_base_ = ['./embedder_r18-w4_ms_toy.py']
model = dict(
    _delete_=True,
    type='EmbeddingDistiller',
    student={{_base_.model}},
    teacher_cfg='{{fileDirname}}/embedder_r18-w16_ms_toy.py',
    teacher_ckpt='work_dirs/embedder_r18-w16_ms_toy/epoch_30.pth',
    distill_loss=dict(type='AbsoluteEmbeddingLoss', loss_weight=1.0))
