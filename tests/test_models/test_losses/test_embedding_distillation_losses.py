"""Tests of the embedding distillation losses (Yu et al., CVPR 2019, Eq. 4, 5-6, 8, 10-11) against direct float64
evaluations, with gradients at zero distances, autocast and shape errors."""
import itertools
import math

import pytest
import torch

from mmkd.models.losses import (AbsoluteEmbeddingLoss, AttentionTransferLoss, HintLoss, RelativeDistanceLoss,
                                absolute_embedding_loss, attention_transfer_loss, hint_loss, pairwise_distances,
                                relative_distance_loss)
from mmkd.registry import MODELS


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _distance(u, v):
    return math.sqrt(sum((float(a) - float(b))**2 for a, b in zip(u, v)))


def _absolute_reference(s, t):
    return sum(_distance(s[i], t[i]) for i in range(len(s))) / len(s)


def _relative_reference(s, t, reduction):
    b = len(s)
    differences = [_distance(s[i], s[j]) - _distance(t[i], t[j]) for i in range(b) for j in range(b)]
    if reduction == 'frobenius':
        return math.sqrt(sum(d * d for d in differences))
    return sum(abs(d) for d in differences) / (b * (b - 1))


def _hint_reference(s, t):
    return sum(_distance(s[i].flatten(), t[i].flatten()) for i in range(len(s))) / len(s)


def _attention_reference(s, t, p):
    total = 0.0
    for i in range(len(s)):
        maps = []
        for f in (s[i], t[i]):
            a = [
                sum(abs(float(f[c, y, x]))**p for c in range(f.shape[0]))
                for y, x in itertools.product(range(f.shape[1]), range(f.shape[2]))
            ]
            norm = math.sqrt(sum(v * v for v in a))
            maps.append([v / norm for v in a])
        total += _distance(*maps)
    return total / len(s)


def test_absolute_matches_direct_evaluation():
    s, t = _randn(6, 5, seed=1), _randn(6, 5, seed=2)
    assert absolute_embedding_loss(s, t).item() == pytest.approx(_absolute_reference(s, t), rel=1e-12)
    loss = AbsoluteEmbeddingLoss(loss_weight=1.5)(s.float(), t.float())
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(1.5 * _absolute_reference(s, t), rel=1e-5)


@pytest.mark.parametrize('reduction', ['frobenius', 'mean'])
def test_relative_matches_direct_evaluation(reduction):
    s, t = _randn(7, 4, seed=3), _randn(7, 9, seed=4)  # the teacher may be wider than the student
    expected = _relative_reference(s, t, reduction)
    assert relative_distance_loss(s, t, reduction).item() == pytest.approx(expected, rel=1e-12)
    loss = RelativeDistanceLoss(reduction=reduction, loss_weight=0.3)(s.float(), t.float())
    assert loss.item() == pytest.approx(0.3 * expected, rel=1e-5)


def test_relative_is_translation_invariant_and_absolute_is_not():
    """Fig. 2 of the paper: a translated copy of the teacher costs nothing to the relative teacher only."""
    t = _randn(8, 6, seed=5)
    s = t + 3.0
    assert relative_distance_loss(s, t).item() == pytest.approx(0.0, abs=1e-12)
    assert absolute_embedding_loss(s, t).item() == pytest.approx(3.0 * math.sqrt(6), rel=1e-12)


def test_pairwise_distances_are_exact_for_duplicates():
    x = _randn(30, 8, seed=6, dtype=torch.float32) * 100  # > 25 rows: torch's default cdist would use the Gram
    x = torch.cat([x, x[:3]])
    d = pairwise_distances(x)
    assert torch.equal(d.diagonal(), torch.zeros(33))
    assert torch.equal(d[30:, :3].diagonal(), torch.zeros(3))


@pytest.mark.parametrize('reduction', ['frobenius', 'mean'])
def test_relative_gradients_finite_with_duplicates_and_equal_embeddings(reduction):
    base = _randn(6, 4, seed=7, dtype=torch.float32)
    s = torch.cat([base, base[:2]]).requires_grad_()  # two identical pairs: zero off-diagonal distances
    t = _randn(8, 5, seed=8, dtype=torch.float32)
    RelativeDistanceLoss(reduction)(s, t).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0

    # student == teacher: every distance difference is 0, the loss is at its minimum with gradient 0
    s = t.clone().requires_grad_()
    loss = RelativeDistanceLoss(reduction)(s, t)
    loss.backward()
    assert loss.item() == 0
    assert torch.equal(s.grad, torch.zeros_like(s))


@pytest.mark.parametrize('reduction', ['frobenius', 'mean'])
def test_relative_single_row_batch_is_zero(reduction):
    s = torch.ones(1, 4, requires_grad=True)
    loss = RelativeDistanceLoss(reduction)(s, torch.zeros(1, 6))
    loss.backward()
    assert loss.item() == 0 and torch.equal(s.grad, torch.zeros(1, 4))


def test_absolute_and_hint_gradients_finite_when_equal():
    t = _randn(4, 3, seed=9, dtype=torch.float32)
    s = t.clone().requires_grad_()
    AbsoluteEmbeddingLoss()(s, t).backward()
    assert torch.equal(s.grad, torch.zeros_like(s))
    t = _randn(2, 3, 4, 4, seed=10, dtype=torch.float32)
    s = t.clone().requires_grad_()
    HintLoss()(s, t).backward()
    assert torch.equal(s.grad, torch.zeros_like(s))


def test_hint_matches_direct_evaluation():
    s, t = _randn(3, 4, 5, 2, seed=11), _randn(3, 4, 5, 2, seed=12)
    assert hint_loss(s, t).item() == pytest.approx(_hint_reference(s, t), rel=1e-12)
    assert HintLoss(loss_weight=2.0)(s, t).item() == pytest.approx(2 * _hint_reference(s, t), rel=1e-12)


@pytest.mark.parametrize('p', [1, 2, 3.5])
def test_attention_transfer_matches_direct_evaluation(p):
    s, t = _randn(2, 3, 4, 5, seed=13), _randn(2, 6, 4, 5, seed=14)  # different channel counts
    expected = _attention_reference(s, t, p)
    assert attention_transfer_loss(s, t, p).item() == pytest.approx(expected, rel=1e-10)
    assert AttentionTransferLoss(p=p)(s, t).item() == pytest.approx(expected, rel=1e-10)


def test_attention_transfer_default_is_p2_and_finite_at_zero_maps():
    s, t = _randn(2, 3, 4, 4, seed=15), _randn(2, 5, 4, 4, seed=16)
    assert AttentionTransferLoss()(s, t).item() == pytest.approx(_attention_reference(s, t, 2), rel=1e-10)
    zero = torch.zeros(2, 3, 4, 4, requires_grad=True)
    loss = AttentionTransferLoss()(zero, t.float())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zero.grad).all()


def test_gradcheck_float64():
    s, t = _randn(5, 3, seed=17).requires_grad_(), _randn(5, 4, seed=18).requires_grad_()
    torch.autograd.gradcheck(lambda a, b: relative_distance_loss(a, b, 'frobenius'), (s, t))
    torch.autograd.gradcheck(lambda a, b: relative_distance_loss(a, b, 'mean'), (s, t))
    t3 = _randn(5, 3, seed=19).requires_grad_()
    torch.autograd.gradcheck(absolute_embedding_loss, (s, t3))
    a, b = _randn(2, 3, 3, 2, seed=20).requires_grad_(), _randn(2, 3, 3, 2, seed=21).requires_grad_()
    torch.autograd.gradcheck(hint_loss, (a, b))
    c = _randn(2, 4, 3, 2, seed=22).requires_grad_()
    torch.autograd.gradcheck(lambda x, y: attention_transfer_loss(x, y, 2), (a, c))


@pytest.mark.parametrize('loss, shapes', [
    (AbsoluteEmbeddingLoss(), [(6, 8), (6, 8)]),
    (RelativeDistanceLoss(), [(6, 8), (6, 12)]),
    (RelativeDistanceLoss('mean'), [(6, 8), (6, 12)]),
    (HintLoss(), [(2, 3, 4, 4), (2, 3, 4, 4)]),
    (AttentionTransferLoss(), [(2, 3, 4, 4), (2, 5, 4, 4)]),
])
def test_autocast_bf16_gives_float32(loss, shapes):
    s = _randn(*shapes[0], seed=23, dtype=torch.float32).bfloat16().requires_grad_()
    t = _randn(*shapes[1], seed=24, dtype=torch.float32).bfloat16()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value = loss(s, t)
    assert value.dtype == torch.float32
    # the bf16 inputs are exact in float32: the loss is the float32 loss of the same numbers
    assert value.item() == pytest.approx(loss(s.float(), t.float()).item(), rel=1e-6)
    value.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_teacher_is_detached():
    s, t = _randn(4, 3, seed=25).requires_grad_(), _randn(4, 3, seed=26).requires_grad_()
    for loss in (AbsoluteEmbeddingLoss(), RelativeDistanceLoss()):
        loss(s, t).backward()
    assert t.grad is None and s.grad is not None


@pytest.mark.parametrize('func, s_shape, t_shape, pattern', [
    (absolute_embedding_loss, (4, 3), (4, 5), r'absolute_embedding_loss: student \(4, 3\) and teacher \(4, 5\)'),
    (absolute_embedding_loss, (4, 3, 1), (4, 3, 1), r'student \(4, 3, 1\) .* \(B, D\)'),
    (relative_distance_loss, (4, 3), (5, 3), r'relative_distance_loss: student \(4, 3\) and teacher \(5, 3\)'),
    (hint_loss, (2, 3, 4, 4), (2, 6, 4, 4), r'hint_loss: student \(2, 3, 4, 4\) and teacher \(2, 6, 4, 4\)'),
    (attention_transfer_loss, (2, 3, 4, 4),
     (2, 3, 8, 8), r'attention_transfer_loss: student \(2, 3, 4, 4\) and teacher \(2, 3, 8, 8\)'),
])
def test_shape_errors_name_the_tensors(func, s_shape, t_shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        func(torch.zeros(s_shape), torch.zeros(t_shape))


@pytest.mark.parametrize('cfg, pattern', [
    (dict(type='RelativeDistanceLoss', reduction='sum'), 'reduction must be one of'),
    (dict(type='AbsoluteEmbeddingLoss', loss_weight=-1), 'loss_weight must be a number >= 0'),
    (dict(type='AttentionTransferLoss', p=0.5), 'p must be a number >= 1'),
])
def test_invalid_options(cfg, pattern):
    with pytest.raises(ValueError, match=pattern):
        MODELS.build(cfg)


def test_registered_in_mmkd_models_with_defaults():
    relative = MODELS.build(dict(type='RelativeDistanceLoss'))
    assert isinstance(relative, RelativeDistanceLoss)
    assert (relative.reduction, relative.loss_weight) == ('frobenius', 1.0)
    assert MODELS.build(dict(type='AbsoluteEmbeddingLoss')).loss_weight == 1.0
    assert MODELS.build(dict(type='HintLoss')).loss_weight == 1.0
    assert MODELS.build(dict(type='AttentionTransferLoss')).p == 2
