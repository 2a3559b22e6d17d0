"""mmkd.evaluation.retrieval against brute-force loops (with exact ties), pytorch-metric-learning's
AccuracyCalculator, scikit-learn's NMI and direct float64 formulas."""
import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.metrics import normalized_mutual_info_score

from mmkd.evaluation import (RetrievalMetric, embedding_density, kmeans, nearest_neighbors, normalized_mutual_info,
                             retrieval_metrics, spectral_decay)
from mmkd.registry import METRICS


def tied_embeddings(seed=0, n=300, dim=6, num_classes=40):
    """Integer-grid embeddings (many exactly equal distances) with duplicated rows, and labels with singletons."""
    gen = np.random.default_rng(seed)
    x = gen.integers(-2, 3, size=(n, dim)).astype(np.float64)
    dup = gen.choice(n, size=n // 5, replace=False)
    x[dup] = x[gen.choice(n, size=n // 5)]  # exact duplicates, some of another label
    labels = gen.integers(0, num_classes, size=n)
    labels[:3] = [num_classes, num_classes + 1, num_classes + 2]  # three singleton classes
    return x, labels


def brute_force(x, labels, ks):
    """Recall@K and mAP@R by python loops: neighbours sorted by (float64 squared distance, index)."""
    n = len(x)
    recalls = {k: [] for k in ks}
    aps = []
    for q in range(n):
        others = sorted((float(((x[q] - x[j])**2).sum()), j) for j in range(n) if j != q)
        same = [labels[j] == labels[q] for _, j in others]
        r = sum(same)
        if r == 0:  # a singleton's query is left out (as pytorch-metric-learning does)
            continue
        for k in ks:
            recalls[k].append(any(same[:k]))
        hits, ap = 0, 0.0
        for i in range(r):
            if same[i]:
                hits += 1
                ap += hits / (i + 1)
        aps.append(ap / r)
    out = {f'R@{k}': float(np.mean(v)) for k, v in recalls.items()}
    out['mAP@R'] = float(np.mean(aps))
    return out


def brute_neighbours(x, k):
    n = len(x)
    return [[j for _, j in sorted((float(((x[q] - x[j])**2).sum()), j) for j in range(n) if j != q)[:k]]
            for q in range(n)]


@pytest.mark.parametrize('block_size', [64, 128, None])
def test_recall_map_brute_force_with_ties(block_size):
    x, labels = tied_embeddings()
    ks = (1, 2, 4, 8, 16)
    got = retrieval_metrics(x, labels, ks=ks, metrics=('recall', 'map_at_r'), block_size=block_size)
    want = brute_force(x, labels, ks)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert all(isinstance(v, float) for v in got.values())
    # and the neighbour lists themselves, ties ordered by index
    assert nearest_neighbors(torch.from_numpy(x), 10, block_size=block_size).tolist() == brute_neighbours(x, 10)


def test_neighbours_float32_path_and_exact_fallback_agree():
    """Continuous embeddings take the float32 path for almost every query; duplicates force the exact fallback."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(400, 16, generator=gen, dtype=torch.float64)
    x[200:260] = x[0]  # 61 copies of one embedding: its queries must fall back, ties ordered by index
    got = nearest_neighbors(x, 12, block_size=64)
    assert got.tolist() == brute_neighbours(x.numpy(), 12)
    assert got[0].tolist() == list(range(200, 212))


def test_blockwise_equals_one_tile():
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 30, (700, ), generator=gen)
    x = torch.randn(30, 32, generator=gen)[labels] + 0.8 * torch.randn(700, 32, generator=gen)
    one_tile = nearest_neighbors(x, 20, block_size=10**6)
    for block_size in (64, 192, 300):
        assert torch.equal(nearest_neighbors(x, 20, block_size=block_size), one_tile)
    metrics = ('recall', 'map_at_r')
    blocked = retrieval_metrics(x, labels, metrics=metrics, block_size=64)
    assert blocked == retrieval_metrics(x, labels, metrics=metrics, block_size=10**6)


def test_equals_pytorch_metric_learning():
    gen = torch.Generator().manual_seed(3)
    labels = torch.cat([torch.randint(0, 60, (590, ), generator=gen), torch.arange(60, 70)])  # 10 singletons
    x = torch.randn(70, 24, generator=gen)[labels] + 0.9 * torch.randn(600, 24, generator=gen)
    calculator = AccuracyCalculator(
        include=('precision_at_1', 'mean_average_precision_at_r'),
        k='max_bin_count',
        device=torch.device('cpu'),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)))
    want = calculator.get_accuracy(x, labels)
    got = retrieval_metrics(x, labels, ks=(1, ), metrics=('recall', 'map_at_r'), block_size=128)
    assert 0.2 < want['precision_at_1'] < 0.9  # not a trivial case
    assert got['R@1'] == pytest.approx(want['precision_at_1'], abs=1e-12)
    assert got['mAP@R'] == pytest.approx(want['mean_average_precision_at_r'], abs=1e-12)


def test_nmi_against_sklearn():
    gen = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 12, (500, ), generator=gen)
    x = torch.randn(12, 8, generator=gen)[labels] * 3 + torch.randn(500, 8, generator=gen)
    clusters = kmeans(x, 12, seed=5)
    assert clusters.shape == (500, ) and int(clusters.max()) < 12
    assert torch.equal(clusters, kmeans(x, 12, seed=5))  # seeded
    want = normalized_mutual_info_score(labels.numpy(), clusters.numpy())
    assert 0.3 < want < 1
    assert normalized_mutual_info(labels, clusters) == pytest.approx(want, abs=1e-12)
    assert retrieval_metrics(x, labels, metrics=('nmi', ), nmi_seed=5)['NMI'] == pytest.approx(want, abs=1e-12)
    # arbitrary label values and cluster ids, and the degenerate cases
    a = np.random.default_rng(0).integers(0, 7, 300) * 10 - 5
    b = np.random.default_rng(1).integers(0, 4, 300) + 100
    assert normalized_mutual_info(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
    assert normalized_mutual_info(np.zeros(5), np.zeros(5)) == normalized_mutual_info_score(np.zeros(5), np.zeros(5))
    assert normalized_mutual_info(np.zeros(5), np.arange(5)) == normalized_mutual_info_score(np.zeros(5), np.arange(5))


def test_pi_ratio_and_rho_against_float64_formulas():
    gen = np.random.default_rng(6)
    labels = np.concatenate([gen.integers(0, 9, 120), [9]])  # class 9: one sample (no intra pairs, one centre)
    x = gen.normal(size=(10, 16))[labels] + 0.5 * gen.normal(size=(121, 16))
    intra, z_intra = 0.0, 0
    for c in np.unique(labels):
        members = x[labels == c]
        for i in range(len(members)):
            for j in range(len(members)):
                if i != j:
                    intra += np.linalg.norm(members[i] - members[j])
                    z_intra += 1
    centres = np.stack([x[labels == c].mean(0) for c in np.unique(labels)])
    inter = sum(np.linalg.norm(centres[i] - centres[j]) for i in range(10) for j in range(10) if i != j)
    want = (intra / z_intra) / (inter / (10 * 9))
    assert embedding_density(x, labels) == pytest.approx(want, rel=1e-12)
    assert embedding_density(x, labels, memory_budget=2048) == pytest.approx(want, rel=1e-12)  # row blocks
    s = np.linalg.svd(x, compute_uv=False)[2:]  # D = 16: round(10 * 16 / 128) = 1, asked 2 here
    p = s / s.sum()
    want_rho = float(np.sum(1 / len(p) * np.log((1 / len(p)) / p)))
    assert spectral_decay(x, spectral_skip=2) == pytest.approx(want_rho, rel=1e-12)
    default_p = np.linalg.svd(x, compute_uv=False)[1:] / np.linalg.svd(x, compute_uv=False)[1:].sum()
    got = retrieval_metrics(x, labels, metrics=('pi_ratio', 'rho'))
    assert got['rho'] == pytest.approx(float(np.mean(np.log(1 / 15 / default_p))), rel=1e-12)
    assert got['pi_ratio'] == pytest.approx(want, rel=1e-12)
    assert spectral_decay(x[:8]) == math.inf  # N < D: zero singular values


def test_errors():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match='unknown metrics'):
        retrieval_metrics(x, torch.zeros(10, dtype=torch.long), metrics=('recall', 'map'))
    with pytest.raises(ValueError, match='labels must be >= 0'):
        retrieval_metrics(x, -torch.ones(10, dtype=torch.long))
    with pytest.raises(ValueError, match=r'integer \(10, \)'):
        retrieval_metrics(x, torch.zeros(9, dtype=torch.long))
    x[3, 1] = float('nan')
    with pytest.raises(ValueError, match='inf or nan'):
        retrieval_metrics(x, torch.zeros(10, dtype=torch.long))


def test_retrieval_metric_round_trip():
    gen = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 15, (90, ), generator=gen)
    x = torch.randn(15, 12, generator=gen)[labels] + torch.randn(90, 12, generator=gen)
    metric = METRICS.build(dict(type='RetrievalMetric', ks=(1, 4), measures=('recall', 'map_at_r', 'nmi')))
    assert isinstance(metric, RetrievalMetric)
    for start in range(0, 90, 32):  # data samples as mmengine's Evaluator gives them: dicts of tensors
        samples = [
            dict(pred_embedding=x[i], gt_label=labels[i], img_path=f'{i}.png') for i in range(start, start + 32)
            if i < 90
        ]
        metric.process(None, samples)
    got = metric.evaluate(90)
    want = retrieval_metrics(x, labels, ks=(1, 4))
    assert got == {f'retrieval/{k}': v for k, v in want.items()}
    assert set(got) == {'retrieval/R@1', 'retrieval/R@4', 'retrieval/mAP@R', 'retrieval/NMI'}

    with pytest.raises(KeyError, match="no 'pred_embedding'"):
        metric.process(None, [dict(gt_label=torch.tensor(0), pred_instances=None)])


def test_runner_builds_the_evaluator_from_a_config():
    """mmengine's Runner reads an evaluator dict with a 'metrics' key as a list of metrics to build: the measures
    must have another name for the dict to build as one RetrievalMetric."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    with DefaultScope.overwrite_default_scope('mmkd'):
        evaluator = Runner.build_evaluator(None, dict(type='RetrievalMetric', ks=(1, ), measures=('recall', )))
    assert [type(m).__name__ for m in evaluator.metrics] == ['RetrievalMetric']


def test_pi_ratio_of_collapsed_embeddings_is_not_an_error():
    labels = torch.tensor([0, 0, 1, 1])
    assert math.isnan(retrieval_metrics(torch.ones(4, 3), labels, metrics=('pi_ratio', ))['pi_ratio'])
    # class centres in one point, samples apart: no separation of classes at all
    spread = torch.tensor([[1., 0.], [-1., 0.], [0., 1.], [0., -1.]])
    assert retrieval_metrics(spread, labels, metrics=('pi_ratio', ))['pi_ratio'] == float('inf')
