"""Tests of the metric-learning loss wrappers: batch-hard triplet against a direct loop, the others against
pytorch-metric-learning called directly, unlabelled rows, degenerate batches, autocast, learnable parameters."""
import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import LpDistance

from mmkd.models.losses import BatchHardTripletLoss, MarginLoss, MultiSimilarityLoss, ProxyAnchorLoss
from mmkd.registry import MODELS

# 4 classes x 3 + two unlabelled rows: small enough for the loops, below the 25 rows from which torch's cdist
# switches to the (rounding) Gram form
LABELS = torch.tensor([0, 0, 0, 1, 1, 1, -1, 2, 2, 2, 3, 3, 3, -1])


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _batch_hard_reference(embeddings, labels, margin, squared=False, normalize=False, reduction='nonzero_mean'):
    """Hardest positive and hardest negative of every labelled anchor by a float64 loop, as a differentiable
    function of ``embeddings``."""
    x = embeddings.double()
    if normalize:
        x = x / x.norm(dim=1, keepdim=True)

    def dist(i, j):
        squared_distance = ((x[i] - x[j])**2).sum()
        return squared_distance if squared else squared_distance.sqrt()

    losses = []
    for a in range(len(x)):
        if labels[a] < 0:
            continue
        positives = [dist(a, p) for p in range(len(x)) if p != a and labels[p] == labels[a]]
        negatives = [dist(a, n) for n in range(len(x)) if labels[n] >= 0 and labels[n] != labels[a]]
        if positives and negatives:
            losses.append(torch.relu(max(positives) - min(negatives) + margin))
    if reduction == 'nonzero_mean':
        losses = [value for value in losses if value > 0]
    return sum(losses) / len(losses) if losses else x.sum() * 0


@pytest.mark.parametrize('margin, squared, normalize, reduction', [
    (0.0, False, False, 'nonzero_mean'),
    (0.3, False, False, 'nonzero_mean'),
    (0.3, False, False, 'mean'),
    (0.1, True, False, 'nonzero_mean'),
    (0.05, False, True, 'mean'),
])
def test_batch_hard_triplet_matches_loop(margin, squared, normalize, reduction):
    x = _randn(len(LABELS), 5, seed=1).requires_grad_()
    loss_fn = BatchHardTripletLoss(
        margin=margin, squared=squared, normalize_embeddings=normalize, reduction=reduction, loss_weight=2.0)
    loss = loss_fn(x, LABELS)
    reference_input = x.detach().double().requires_grad_()
    reference = 2.0 * _batch_hard_reference(reference_input, LABELS, margin, squared, normalize, reduction)
    assert reference.item() > 0
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    loss.backward()
    reference.backward()
    torch.testing.assert_close(x.grad.double(), reference_input.grad, rtol=1e-4, atol=1e-6)
    # unlabelled rows take no part
    assert torch.equal(x.grad[LABELS == -1], torch.zeros(2, 5))


def test_batch_hard_triplet_matches_loop_on_a_paper_sized_batch():
    """32 rows, 8 per class (Yu et al.'s batches): pml's distances now come from the Gram matrix."""
    labels = torch.arange(4).repeat_interleave(8)
    x = _randn(32, 16, seed=13)
    for margin in (0.0, 0.5):
        expected = _batch_hard_reference(x, labels, margin).item()
        assert expected > 0
        assert BatchHardTripletLoss(margin=margin)(x, labels).item() == pytest.approx(expected, rel=1e-5)


def test_batch_hard_triplet_singletons_are_negatives_only():
    labels = torch.tensor([0, 0, 1, 2, 2, 3, -1])
    x = _randn(7, 3, seed=14)
    for reduction in ('mean', 'nonzero_mean'):
        expected = _batch_hard_reference(x, labels, 1.0, reduction=reduction).item()
        loss = BatchHardTripletLoss(margin=1.0, reduction=reduction)(x, labels)
        assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_batch_hard_triplet_defaults_act_on_raw_embeddings():
    """margin 0, no normalisation: the loss scales with the embeddings (pml's default distance would normalise)."""
    loss_fn = BatchHardTripletLoss()
    assert (loss_fn.margin, loss_fn.normalize_embeddings, loss_fn.squared, loss_fn.reduction) == \
        (0.0, False, False, 'nonzero_mean')
    x = _randn(len(LABELS), 5, seed=2)
    assert loss_fn(3 * x, LABELS).item() == pytest.approx(3 * loss_fn(x, LABELS).item(), rel=1e-5)
    assert loss_fn(x, LABELS).item() == pytest.approx(_batch_hard_reference(x, LABELS, 0.0).item(), rel=1e-5)


def test_batch_hard_triplet_equals_pml_on_labelled_rows():
    x = _randn(len(LABELS), 6, seed=3)
    keep = LABELS >= 0
    distance = LpDistance(normalize_embeddings=False)
    pml_loss = pml_losses.TripletMarginLoss(margin=0.2, distance=distance)
    miner = pml_miners.BatchHardMiner(distance=LpDistance(normalize_embeddings=False))
    expected = pml_loss(x[keep], LABELS[keep], miner(x[keep], LABELS[keep]))
    assert BatchHardTripletLoss(margin=0.2)(x, LABELS).item() == pytest.approx(expected.item(), rel=1e-6)


def test_unlabelled_rows_are_not_a_class():
    """Without the filter, pml would treat -1 as one more class: here the two unlabelled rows would be each
    other's positive and everyone's nearest negative."""
    x = _randn(len(LABELS), 5, seed=4)
    x[LABELS == -1] = x[0].clone()  # unlabelled copies of a class-0 row
    loss = BatchHardTripletLoss(margin=0.5)(x, LABELS)
    assert loss.item() == pytest.approx(_batch_hard_reference(x, LABELS, 0.5).item(), rel=1e-5)


def _all_losses():
    return [
        BatchHardTripletLoss(margin=0.2),
        MarginLoss(num_classes=4),
        MultiSimilarityLoss(),
        ProxyAnchorLoss(num_classes=4, embedding_size=5),
    ]


@pytest.mark.parametrize('labels', [
    torch.tensor([-1, -1, -1, -1]),
    torch.tensor([0, -1, -1, -1]),
    torch.tensor([0, 1, 2, 3]),
    torch.tensor([], dtype=torch.long),
])
def test_degenerate_batches_give_a_graph_keeping_zero(labels):
    for loss_fn in _all_losses():
        if isinstance(loss_fn, ProxyAnchorLoss) and (labels >= 0).any():
            continue  # one labelled row is enough for proxies
        x = _randn(len(labels), 5, seed=5).requires_grad_()
        loss = loss_fn(x, labels)
        assert loss.item() == 0 and loss.dtype == torch.float32 and loss.requires_grad
        loss.backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
        for parameter in loss_fn.parameters():
            assert torch.equal(parameter.grad, torch.zeros_like(parameter))


def test_single_class_batch_is_finite():
    labels = torch.tensor([1, 1, 1, 1, -1])
    for loss_fn in _all_losses():
        x = _randn(5, 5, seed=6).requires_grad_()
        loss = loss_fn(x, labels)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_duplicated_embeddings_give_finite_gradients():
    base = _randn(6, 5, seed=7)
    x = torch.cat([base, base]).requires_grad_()  # each row's positive is its exact copy: distance 0
    labels = torch.tensor([0, 0, 1, 1, 2, 2] * 2)
    for loss_fn in _all_losses():
        torch.manual_seed(0)
        x.grad = None
        loss = loss_fn(x, labels)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all(), type(loss_fn).__name__


def test_any_integer_label_dtype():
    x = _randn(len(LABELS), 5, seed=15)
    for loss_fn in _all_losses():
        values = []
        for dtype in (torch.int64, torch.int32, torch.int16):
            torch.manual_seed(0)
            values.append(loss_fn(x, LABELS.to(dtype)).item())
        assert values[0] > 0 and values == [values[0]] * 3, type(loss_fn).__name__


def test_autocast_bf16_gives_float32():
    x = _randn(len(LABELS), 5, seed=8).bfloat16().requires_grad_()
    for loss_fn in _all_losses():
        torch.manual_seed(0)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            loss = loss_fn(x, LABELS)
        torch.manual_seed(0)
        expected = loss_fn(x.float(), LABELS)
        assert loss.dtype == torch.float32, type(loss_fn).__name__
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_margin_loss_equals_pml_and_learns_per_class_beta():
    x = _randn(len(LABELS), 5, seed=9).requires_grad_()
    keep = LABELS >= 0
    loss_fn = MarginLoss(num_classes=4)
    assert isinstance(loss_fn.loss.beta, torch.nn.Parameter) and loss_fn.loss.beta.shape == (4, )
    assert torch.equal(loss_fn.loss.beta.detach(), torch.full((4, ), 1.2))
    torch.manual_seed(0)
    loss = loss_fn(x, LABELS)

    reference = pml_losses.MarginLoss(margin=0.2, nu=0, beta=1.2, learn_beta=True, num_classes=4)
    miner = pml_miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)
    torch.manual_seed(0)
    expected = reference(x[keep], LABELS[keep], miner(x[keep], LABELS[keep]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and loss.item() > 0
    loss.backward()
    assert loss_fn.loss.beta.grad is not None and loss_fn.loss.beta.grad.abs().sum() > 0


def test_multi_similarity_equals_pml():
    x = _randn(len(LABELS), 5, seed=10)
    keep = LABELS >= 0
    reference = pml_losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5)
    miner = pml_miners.MultiSimilarityMiner(epsilon=0.1)
    expected = reference(x[keep], LABELS[keep], miner(x[keep], LABELS[keep]))
    loss = MultiSimilarityLoss()(x, LABELS)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and loss.item() > 0


def test_multi_similarity_matches_formula_without_mining():
    """With an epsilon that keeps every pair, Eq. (4) of Wang et al. 2019 on cosine similarities."""
    x = _randn(8, 4, seed=11)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    alpha, beta, base = 2.0, 40.0, 0.5
    s = torch.nn.functional.normalize(x.double(), dim=1) @ torch.nn.functional.normalize(x.double(), dim=1).T
    total = 0.0
    for i in range(8):
        pos = [s[i, j] for j in range(8) if j != i and labels[j] == labels[i]]
        neg = [s[i, j] for j in range(8) if labels[j] != labels[i]]
        total += math.log(1 + sum(math.exp(-alpha * (v - base)) for v in pos)) / alpha
        total += math.log(1 + sum(math.exp(beta * (v - base)) for v in neg)) / beta
    loss = MultiSimilarityLoss(alpha=alpha, beta=beta, base=base, epsilon=10.0)(x, labels)
    assert loss.item() == pytest.approx(total / 8, rel=1e-5)


def test_proxy_anchor_equals_pml_and_matches_formula():
    x = _randn(len(LABELS), 5, seed=12).requires_grad_()
    keep = LABELS >= 0
    torch.manual_seed(0)
    loss_fn = ProxyAnchorLoss(num_classes=6, embedding_size=5)
    torch.manual_seed(0)
    reference = pml_losses.ProxyAnchorLoss(num_classes=6, embedding_size=5, margin=0.1, alpha=32)
    assert torch.equal(loss_fn.loss.proxies, reference.proxies)
    loss = loss_fn(x, LABELS)
    assert loss.item() == pytest.approx(reference(x[keep], LABELS[keep]).item(), rel=1e-6)

    # Eq. (4) of Kim et al. 2020: positive term over the proxies with positives, negative term over all proxies
    e = torch.nn.functional.normalize(x[keep].detach().double(), dim=1)
    p = torch.nn.functional.normalize(loss_fn.loss.proxies.detach().double(), dim=1)
    s, y = e @ p.T, LABELS[keep]
    with_positives = y.unique()
    positive = sum(torch.log1p(torch.exp(-32 * (s[y == c, c] - 0.1)).sum()) for c in with_positives)
    negative = sum(torch.log1p(torch.exp(32 * (s[y != c, c] + 0.1)).sum()) for c in range(6))
    assert loss.item() == pytest.approx((positive / len(with_positives) + negative / 6).item(), rel=1e-5)

    loss.backward()
    assert loss_fn.loss.proxies.grad.abs().sum() > 0


def test_learnable_parameters_reach_an_mmengine_optimizer():
    from mmengine.optim import build_optim_wrapper

    class Model(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(5, 5)
            # named as in ImageEmbedder: the documented keys are substrings of 'loss_module.loss.beta' etc.
            self.loss_module = MarginLoss(num_classes=4)
            self.proxy_loss_module = ProxyAnchorLoss(num_classes=4, embedding_size=5)

    model = Model()
    optim_wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='Adam', lr=1e-5),
            paramwise_cfg=dict(custom_keys={
                'loss.beta': dict(lr_mult=50.0),
                'loss.proxies': dict(lr_mult=100.0)
            })))
    lrs = {id(p): group['lr'] for group in optim_wrapper.optimizer.param_groups for p in group['params']}
    assert lrs[id(model.loss_module.loss.beta)] == pytest.approx(5e-4)
    assert lrs[id(model.proxy_loss_module.loss.proxies)] == pytest.approx(1e-3)
    assert lrs[id(model.head.weight)] == pytest.approx(1e-5)


def test_registered_in_mmkd_models_with_defaults():
    triplet = MODELS.build(dict(type='BatchHardTripletLoss'))
    assert isinstance(triplet, BatchHardTripletLoss) and triplet.loss.margin == 0.0
    margin = MODELS.build(dict(type='MarginLoss', num_classes=10))
    assert (margin.loss.margin, margin.loss.nu, margin.miner.cutoff, margin.miner.nonzero_loss_cutoff) == \
        (0.2, 0, 0.5, 1.4)
    multi = MODELS.build(dict(type='MultiSimilarityLoss'))
    assert (multi.loss.alpha, multi.loss.beta, multi.loss.base, multi.miner.epsilon) == (2.0, 40.0, 0.5, 0.1)
    proxy = MODELS.build(dict(type='ProxyAnchorLoss', num_classes=10, embedding_size=8))
    assert (proxy.loss.margin, proxy.loss.alpha, tuple(proxy.loss.proxies.shape)) == (0.1, 32.0, (10, 8))


@pytest.mark.parametrize('loss_fn, embeddings_shape, labels, pattern', [
    (BatchHardTripletLoss(),
     (4, 3), [0] * 5, r'labels must be an integer tensor \(B, \) for embeddings \(4, 3\), got \(5,\)'),
    (BatchHardTripletLoss(), (4, ), [0] * 4, r'embeddings must be a floating tensor \(B, D\), got \(4,\)'),
    (BatchHardTripletLoss(), (4, 3), [0.0] * 4, r'labels must be an integer tensor'),
    (BatchHardTripletLoss(), (2, 3), [0, -2], 'labels must be class indices >= 0 or -1'),
    (MarginLoss(num_classes=3), (2, 3), [0, 3], r'labels must be < num_classes=3'),
    (ProxyAnchorLoss(3, 4), (2, 3), [0, 1], r'ProxyAnchorLoss: embeddings \(2, 3\) must have embedding_size=4'),
])
def test_input_errors(loss_fn, embeddings_shape, labels, pattern):
    with pytest.raises(ValueError, match=pattern):
        loss_fn(torch.zeros(embeddings_shape), torch.tensor(labels))


@pytest.mark.parametrize('cfg, pattern', [
    (dict(type='BatchHardTripletLoss', reduction='sum'), 'reduction must be one of'),
    (dict(type='BatchHardTripletLoss', margin=-0.1), 'margin must be a number >= 0'),
    (dict(type='MarginLoss', num_classes=0), 'num_classes must be None or an integer >= 1'),
    (dict(type='MarginLoss', cutoff=1.5), 'nonzero_loss_cutoff must be a number > cutoff'),
    (dict(type='ProxyAnchorLoss', num_classes=3, embedding_size=0), 'embedding_size must be an integer >= 1'),
    (dict(type='MultiSimilarityLoss', loss_weight=-1), 'loss_weight must be a number >= 0'),
])
def test_invalid_options(cfg, pattern):
    with pytest.raises(ValueError, match=pattern):
        MODELS.build(cfg)


@pytest.mark.parametrize('kind', [
    dict(type='BatchHardTripletLoss'),
    dict(type='MarginLoss'),
    dict(type='MultiSimilarityLoss'),
    dict(type='ProxyAnchorLoss', num_classes=2, embedding_size=4)
])
def test_non_finite_embeddings_are_an_error_not_a_quiet_number(kind):
    """Multi-similarity returned a small finite loss with nan gradients for one nan row: every loss refuses."""
    embeddings = torch.randn(6, 4)
    embeddings[2, 1] = float('nan')
    with pytest.raises(ValueError, match=r'embeddings \(6, 4\) hold nan or inf'):
        MODELS.build(kind)(embeddings, torch.tensor([0, 0, 0, 1, 1, 1]))
