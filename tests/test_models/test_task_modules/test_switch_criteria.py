"""CoLAD's switch criteria (Eq. (3)) against values computed by hand, their decision rules, and the same decision on
every rank of a distributed run at batch granularity."""
import math
import os
import socket

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from mmkd.models.task_modules import FisherCriterion, StdMeanCriterion, TwoGaussians, build_switch
from mmkd.models.task_modules.switch_criteria import candidate_units, fisher_score, std_mean_ratio

# two images; image 0 has GT boxes 0 and 1, image 1 has GT box 0 (gts_per_image = 2: row 3 is an empty slot);
# two FPN levels. Per candidate: image, GT row, level.
IMAGE = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
GT_ROW = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
LEVEL = torch.tensor([0, 0, 1, 0, 0, 0, 1, 1])
A = torch.tensor([1., 2., 3., 2., 2., 4., 6., 8.])
B = torch.tensor([2., 2., 2., 1., 3., 5., 5., 5.])


def units(granularity):
    return candidate_units(granularity, IMAGE, GT_ROW, LEVEL, num_imgs=2, gts_per_image=2, num_levels=2)


def hand_ratio(values):
    values = [float(v) for v in values]
    if len(values) < 2:
        return float('nan')
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean)**2 for v in values) / (len(values) - 1)) / mean


def assert_same(actual, expected):
    actual = actual.tolist()
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert (math.isnan(a) and math.isnan(e)) or a == pytest.approx(e, rel=1e-12), (actual, expected)


@pytest.mark.parametrize('granularity', ['batch', 'image', 'gt', 'gt_level'])
def test_std_mean_by_hand(granularity):
    u = units(granularity)
    criterion = StdMeanCriterion(granularity)
    for costs in (A, B):
        expected = [hand_ratio(costs[u.of_candidate == k]) for k in range(u.num_units)]
        assert_same(criterion.rho(criterion.unit_statistics(costs, u, None)), expected)
    # a few by hand: batch A = [1, 2, 3, 2, 2, 4, 6, 8], mean 3.5, sample variance 40 / 7
    if granularity == 'batch':
        assert criterion.rho(criterion.unit_statistics(A, u, None)).item() == pytest.approx(math.sqrt(40 / 7) / 3.5)
    if granularity == 'gt_level':  # GT row 0, level 0: costs [1, 2] -> std 0.7071, mean 1.5
        assert criterion.rho(criterion.unit_statistics(A, u, None))[0].item() == pytest.approx(math.sqrt(0.5) / 1.5)


def test_std_mean_ratio_degenerate_units():
    # count, sum, sum of squares: 1 value (no std), mean 0, identical values
    stats = torch.tensor([[1., 3., 9.], [2., 0., 0.], [3., 6., 12.], [0., 0., 0.]], dtype=torch.float64)
    ratio = std_mean_ratio(stats)
    assert math.isnan(ratio[0]) and math.isnan(ratio[1]) and ratio[2] == 0 and math.isnan(ratio[3])


def test_decisions_by_hand_at_gt_level():
    decision = StdMeanCriterion('gt_level').decide([A, B], units('gt_level'))
    # units (row * 2 + level): 0: A [1, 2] 0.471 vs B [2, 2] 0 -> A; 1: single candidate A 3 vs B 2 -> lower mean B;
    # 2: A [2, 2] 0 vs B [1, 3] 0.707 -> B; 3: no candidates; 4: single, A 4 vs B 5 -> A; 5: A [6, 8] vs B [5, 5] -> A;
    # 6, 7: empty row slot
    assert decision.teacher[[0, 1, 2, 4, 5]].tolist() == [0, 1, 1, 0, 0]
    assert decision.has_candidates.tolist() == [True, True, True, False, True, True, False, False]
    torch.testing.assert_close(decision.share(), torch.tensor([3 / 5, 2 / 5], dtype=torch.float64))


def test_ties_go_to_the_first_network():
    for granularity in ('batch', 'gt_level'):
        decision = StdMeanCriterion(granularity).decide([B, B.clone()], units(granularity))
        assert (decision.teacher == 0).all()
    # the lower-mean fallback ties too: identical single candidates
    decision = StdMeanCriterion('gt_level').decide([A, A * 1], units('gt_level'))
    assert (decision.teacher == 0).all()


def fit(means, variances, n_iter):
    means = torch.tensor(means, dtype=torch.float64)
    return TwoGaussians(
        torch.full_like(means, 0.5), means, torch.tensor(variances, dtype=torch.float64), torch.tensor(n_iter),
        torch.ones(len(n_iter), dtype=torch.bool))


def test_fisher_score_by_hand():
    f = fit([[1., 3.], [0., 10.], [2., 2.], [0., 0.]], [[0.5, 1.5], [1., 4.], [1., 1.], [1., 1.]], [5, 3, 2, 0])
    assert_same(fisher_score(f), [4 / 2, 100 / 5, 0., float('nan')])


@pytest.mark.parametrize('granularity', ['batch', 'image', 'gt'])
def test_fisher_decision_by_hand(granularity):
    # rows: 0, 1 (image 0), 2 (image 1), 3 (empty slot, not fitted)
    fit_a = fit([[1., 3.], [0., 10.], [2., 4.], [0., 0.]], [[0.5, 1.5], [1., 4.], [1., 1.], [1., 1.]], [5, 3, 2, 0])
    fit_b = fit([[1., 4.], [0., 1.], [2., 2.], [0., 0.]], [[0.5, 0.5], [1., 1.], [1., 1.], [1., 1.]], [5, 3, 2, 0])
    score_a, score_b = [2., 20., 2.], [9., 0.5, 0.]
    criterion = FisherCriterion(granularity)
    decision = criterion.decide([A, B], units(granularity), [fit_a, fit_b])
    if granularity == 'gt':
        assert_same(decision.rho[0], score_a + [float('nan')])
        assert decision.teacher[:3].tolist() == [1, 0, 0]
    elif granularity == 'image':  # mean over the image's fitted GT boxes
        assert_same(decision.rho[0], [11., 2.])
        assert_same(decision.rho[1], [4.75, 0.])
        assert decision.teacher.tolist() == [0, 0]
    else:
        assert_same(decision.rho[:, 0], [sum(score_a) / 3, sum(score_b) / 3])
        assert decision.teacher.tolist() == [0]


def test_invalid_configs_are_named():
    with pytest.raises(ValueError, match=r"granularity must be one of \('batch', 'image', 'gt'\), got 'gt_level'"):
        FisherCriterion('gt_level')
    with pytest.raises(ValueError, match='granularity must be one of'):
        StdMeanCriterion('level')
    with pytest.raises(TypeError, match='switch must be a switch criterion'):
        build_switch(dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4))
    assert isinstance(build_switch(dict(type='StdMeanCriterion')), StdMeanCriterion)
    assert build_switch(dict(type='FisherCriterion')).granularity == 'gt'
    assert build_switch(dict(type='StdMeanCriterion')).granularity == 'gt_level'


# ------------------------------------------------------------------------------------------------ distributed
def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _rank_costs(rank):
    # each rank sees its own batch; network 0 wins on rank 0's batch alone, network 1 on rank 1's alone, and the
    # pooled batch (the decision that must be taken everywhere) goes to network 1
    if rank == 0:
        return torch.tensor([1., 2., 3.]), torch.tensor([2., 2.1, 2.2])
    return torch.tensor([5., 5.1, 5.2, 5.0]), torch.tensor([1., 9., 2., 8.])


def _worker(rank, port, results):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch_dist.init_process_group('gloo', rank=rank, world_size=2)
    try:
        a, b = _rank_costs(rank)
        n = a.numel()
        u = candidate_units('batch', torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                            torch.zeros(n, dtype=torch.long), 1, 1, 1)
        synced = StdMeanCriterion('batch').decide([a, b], u)
        local = StdMeanCriterion('batch', sync_batch=False).decide([a, b], u)
        results[rank] = (synced.teacher.tolist(), synced.rho[:, 0].tolist(), local.teacher.tolist())
    finally:
        torch_dist.destroy_process_group()


def test_batch_decision_is_the_same_on_every_rank():
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
    pooled_a = torch.cat([_rank_costs(0)[0], _rank_costs(1)[0]])
    pooled_b = torch.cat([_rank_costs(0)[1], _rank_costs(1)[1]])
    expected_rho = [hand_ratio(pooled_a), hand_ratio(pooled_b)]
    assert expected_rho[1] > expected_rho[0]
    for rank in (0, 1):
        teacher, rho, local = results[rank]
        assert teacher == [1]
        assert rho == pytest.approx(expected_rho, rel=1e-12)
    # without the all-reduce the ranks would disagree (which the test's data is built to show)
    assert results[0][2] == [0] and results[1][2] == [1]
