"""RegularizedMarginLoss and switch_negatives (Roth et al., ICML 2020): the switch of negatives for positives, its
frequency, and the margin loss against a float64 evaluation of the formula (S2SD supplementary Eq. 9)."""
import math

import numpy as np
import pytest
import torch

from mmkd.models.losses.metric_learning import MarginLoss, RegularizedMarginLoss, switch_negatives
from mmkd.registry import MODELS


def unit_embeddings(batch: int, dim: int = 6, seed: int = 0) -> torch.Tensor:
    e = torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed))
    return e / e.norm(dim=1, keepdim=True)


def ref_margin_loss(embeddings, labels, triplets, beta, margin):
    """Eq. 9, [m + (-1)^{positive} (beta - d_ij)]_+ for the (anchor, positive) and (anchor, negative) pair of each
    triplet (a switched negative is pushed away as a negative), beta of the anchor's class, reduced as pml does: the
    sum of all the terms over the number of nonzero terms (0 when none)."""
    e = np.asarray(embeddings, np.float64)
    e = e / np.sqrt((e * e).sum(axis=1, keepdims=True))
    beta = np.atleast_1d(np.asarray(beta, np.float64))
    terms = []
    for a, p, n in zip(*[np.asarray(t) for t in triplets]):
        b = beta[labels[a]] if len(beta) > 1 else beta[0]
        d_ap = math.sqrt(((e[a] - e[p])**2).sum())
        d_an = math.sqrt(((e[a] - e[n])**2).sum())
        terms += [max(0.0, margin - (b - d_ap)), max(0.0, margin + (b - d_an))]
    nonzero = sum(t > 0 for t in terms)
    return sum(terms) / nonzero if nonzero else 0.0


class FixedTriplets(torch.nn.Module):
    """A miner that returns given (anchors, positives, negatives)."""

    def __init__(self, triplets):
        super().__init__()
        self.triplets = tuple(torch.tensor(t) for t in triplets)

    def forward(self, embeddings, labels):
        return self.triplets


def test_p_switch_zero_equals_margin_loss_under_one_seed():
    embeddings, labels = unit_embeddings(12), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    plain = MarginLoss(beta=0.9, learn_beta=True, num_classes=4)
    regularized = RegularizedMarginLoss(p_switch=0.0, beta=0.9, learn_beta=True, num_classes=4)
    torch.manual_seed(5)
    expected = plain(embeddings, labels)
    state = torch.get_rng_state()
    torch.manual_seed(5)
    got = regularized(embeddings, labels)
    assert expected.item() > 0
    assert got.item() == expected.item()
    # no draw for the switch either: the random stream of the training is the margin loss's
    assert torch.equal(torch.get_rng_state(), state)
    # and the switch changes it (same seed, p = 1)
    torch.manual_seed(5)
    assert RegularizedMarginLoss(p_switch=1.0, beta=0.9, num_classes=4)(embeddings, labels).item() != expected.item()


def test_switch_all_replaces_negatives_by_positives_of_the_anchor():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])  # class 2 has a single row
    anchors = torch.arange(10).repeat(50)
    negatives = torch.tensor([3, 5, 6, 0, 1, 0, 2, 2, 0, 4]).repeat(50)
    chosen = {a: [] for a in range(10)}
    for seed in range(4):
        torch.manual_seed(seed)
        switched = switch_negatives(anchors, negatives, labels, 1.0)
        for a, n, new in zip(anchors.tolist(), negatives.tolist(), switched.tolist()):
            if a == 5:
                assert new == n  # no other row of its class: kept
            else:
                assert labels[new] == labels[a] and new != a
                chosen[a].append(new)
    assert switch_negatives(anchors, negatives, labels, 1.0) is not negatives
    # a uniform draw among the anchor's other rows: every one is drawn, at about its share
    for a, drawn in chosen.items():
        if a == 5:
            continue
        others = [j for j in range(10) if labels[j] == labels[a] and j != a]
        counts = np.array([drawn.count(j) for j in others])
        share = 1 / len(others)
        sigma = math.sqrt(len(drawn) * share * (1 - share))
        assert np.all(np.abs(counts - len(drawn) * share) <= 5 * sigma), (a, counts)


def test_switch_frequency_matches_p_switch():
    p, batches, rows = 0.4, 500, 40
    labels = torch.arange(rows) // 4
    anchors = torch.arange(rows)
    negatives = (anchors + 4) % rows  # a row of the next class
    torch.manual_seed(0)
    switches = 0
    for _ in range(batches):
        switched = switch_negatives(anchors, negatives, labels, p)
        same = labels[switched] == labels[anchors]
        assert torch.equal(switched[~same], negatives[~same])
        assert bool((switched[same] != anchors[same]).all())
        switches += int(same.sum())
    triplets = batches * rows
    tolerance = 5 * math.sqrt(p * (1 - p) / triplets)  # 5 binomial standard deviations of the rate: 0.017
    assert abs(switches / triplets - p) < tolerance
    assert torch.equal(switch_negatives(anchors, negatives, labels, 0.0), negatives)


def test_switch_of_no_triplets():
    empty = torch.zeros(0, dtype=torch.long)
    assert switch_negatives(empty, empty, torch.tensor([0, 1]), 0.5).numel() == 0


@pytest.mark.parametrize('per_class', [False, True])
def test_loss_matches_float64_formula_on_given_triplets(per_class):
    """p = 0 is the margin loss of the miner's triplets; p = 1 with classes of two rows switches each negative for
    the triplet's own positive (the anchor's only other row)."""
    labels = [0, 0, 1, 1, 2, 2]
    embeddings = unit_embeddings(6, seed=3)
    triplets = ([0, 1, 2, 3, 4, 5, 0], [1, 0, 3, 2, 5, 4, 1], [2, 4, 0, 5, 1, 3, 5])
    betas = [0.5, 1.2, 0.9] if per_class else [1.1]
    for p_switch, negatives in ((0.0, triplets[2]), (1.0, triplets[1])):
        loss = RegularizedMarginLoss(
            p_switch=p_switch, margin=0.3, beta=1.0, learn_beta=True, num_classes=3 if per_class else None)
        with torch.no_grad():
            loss.loss.beta.copy_(torch.tensor(betas))
        loss.miner = FixedTriplets(triplets)
        expected = ref_margin_loss(embeddings, labels, (triplets[0], triplets[1], negatives), betas, 0.3)
        assert expected > 0
        got = loss(embeddings, torch.tensor(labels))
        assert got.item() == pytest.approx(expected, rel=1e-5), p_switch
    # the switch changes the value (the references above differ)
    assert ref_margin_loss(embeddings, labels, triplets, betas, 0.3) != pytest.approx(
        ref_margin_loss(embeddings, labels, (triplets[0], triplets[1], triplets[1]), betas, 0.3))


def test_built_from_config_with_semi_supervised_labels():
    loss = MODELS.build(dict(type='RegularizedMarginLoss', p_switch=0.35, num_classes=3))
    assert loss.p_switch == 0.35 and loss.loss.beta.shape == (3, )
    embeddings = unit_embeddings(8, seed=1).requires_grad_()
    torch.manual_seed(0)
    value = loss(embeddings, torch.tensor([0, 0, 1, 1, 2, 2, -1, -1]))
    value.backward()
    assert math.isfinite(value.item()) and value.item() > 0
    assert embeddings.grad[6:].abs().sum() == 0 and embeddings.grad[:6].abs().sum() > 0


@pytest.mark.parametrize('p_switch', [-0.1, 1.5, float('nan'), '0.4', None, True])
def test_bad_p_switch_refused(p_switch):
    with pytest.raises(ValueError, match=r'RegularizedMarginLoss: p_switch must be a probability in \[0, 1\], got '):
        RegularizedMarginLoss(p_switch=p_switch)
