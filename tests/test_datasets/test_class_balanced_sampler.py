"""ClassBalancedSampler: P x K batches, even class coverage, determinism, ranks, the Runner's build."""
from collections import Counter
from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmkd.datasets import ClassBalancedSampler
from mmkd.registry import DATA_SAMPLERS
from .test_retrieval_datasets import write_cub

DIST_INFO = 'mmkd.datasets.samplers.class_balanced_sampler.get_dist_info'


class LabelOnlyDataset:
    """A dataset that gives labels through get_data_info only (no get_gt_labels)."""

    def __init__(self, labels):
        self.labels = list(labels)

    def __len__(self):
        return len(self.labels)

    def get_data_info(self, idx):
        return dict(gt_label=self.labels[idx])


def _labels(class_sizes, num_unlabeled=0, seed=0):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(class_sizes)] + [np.full(num_unlabeled, -1)])
    return np.random.default_rng(seed).permutation(labels)


def _batches(sampler):
    indices = list(sampler)
    assert len(indices) == len(sampler) and len(indices) % sampler.batch_size == 0
    return [indices[i:i + sampler.batch_size] for i in range(0, len(indices), sampler.batch_size)]


def test_batches_are_p_classes_times_k_instances():
    sizes = [9, 4, 12, 6, 5, 8, 7]
    labels = _labels(sizes)
    sampler = ClassBalancedSampler(LabelOnlyDataset(labels), batch_size=12, instances_per_class=4, seed=0)
    batches = _batches(sampler)
    assert len(batches) == -(-len(labels) // 12)  # ceil(51 / 12) = 5
    for batch in batches:
        blocks = [labels[batch[i:i + 4]] for i in range(0, 12, 4)]
        assert all(len(set(b)) == 1 for b in blocks)  # K images of one class, class after class
        assert len({b[0] for b in blocks}) == 3  # P distinct classes
        for i in range(0, 12, 4):
            if sizes[labels[batch[i]]] >= 4:
                assert len(set(batch[i:i + 4])) == 4  # without replacement when the class is large enough


def test_classes_are_covered_evenly_over_an_epoch():
    # 7 classes, P = 3: batches straddle the seams of the class permutations
    labels = _labels([20] * 7)
    sampler = ClassBalancedSampler(LabelOnlyDataset(labels), batch_size=6, instances_per_class=2, seed=5)
    counts = Counter()
    batches = _batches(sampler)
    assert len(batches) == 24  # ceil(140 / 6)
    for batch in batches:
        counts.update({labels[i] for i in batch})
    assert sum(counts.values()) == 24 * 3
    assert set(counts) == set(range(7)) and max(counts.values()) - min(counts.values()) <= 1


def test_small_class_sampled_with_replacement():
    labels = _labels([2, 10, 10])
    small = set(np.flatnonzero(labels == 0))
    sampler = ClassBalancedSampler(LabelOnlyDataset(labels), batch_size=8, instances_per_class=4, seed=1)
    seen_small = 0
    for epoch in range(20):
        sampler.set_epoch(epoch)
        for batch in _batches(sampler):
            for i in range(0, 8, 4):
                block = batch[i:i + 4]
                if labels[block[0]] == 0:
                    assert set(block) == small  # both images every time, plus repeats
                    seen_small += 1
    assert seen_small >= 20


def test_deterministic_per_seed_and_epoch():
    dataset = LabelOnlyDataset(_labels([8] * 6))
    a = ClassBalancedSampler(dataset, batch_size=8, instances_per_class=4, seed=3)
    b = ClassBalancedSampler(dataset, batch_size=8, instances_per_class=4, seed=3)
    assert list(a) == list(b) and list(a) == list(a)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) and list(a) != first
    assert list(ClassBalancedSampler(dataset, batch_size=8, instances_per_class=4, seed=4)) != first


def test_ranks_take_disjoint_equal_shares_of_one_global_sequence():
    dataset = LabelOnlyDataset(_labels([6, 7, 5, 9, 4, 8]))
    world = 3
    per_rank = []
    for rank in range(world):
        with mock.patch(DIST_INFO, return_value=(rank, world)):
            sampler = ClassBalancedSampler(dataset, batch_size=6, instances_per_class=3, seed=7)
        sampler.set_epoch(2)
        per_rank.append(_batches(sampler))
    # ceil(39 / 6) = 7 batches, rounded up to 9 for 3 ranks: 3 each
    assert [len(b) for b in per_rank] == [3, 3, 3]
    global_batches = sampler._global_batches()
    assert len(global_batches) == 9
    for rank in range(world):
        assert per_rank[rank] == [b.tolist() for b in global_batches[rank::world]]
    # no batch is taken by two ranks, and the ranks' batches are the whole global sequence
    taken = sorted(tuple(b) for batches in per_rank for b in batches)
    assert taken == sorted(tuple(b.tolist()) for b in global_batches)
    with mock.patch(DIST_INFO, return_value=(0, 1)):
        single = ClassBalancedSampler(dataset, batch_size=6, instances_per_class=3, seed=7)
    single.set_epoch(2)
    # one process draws the same sequence, only shorter (7 batches, no rounding up)
    assert _batches(single) == [b.tolist() for b in global_batches[:7]]


def test_unlabeled_per_batch_draws_from_the_minus_one_pool():
    labels = _labels([6, 6, 6], num_unlabeled=5)
    sampler = ClassBalancedSampler(
        LabelOnlyDataset(labels), batch_size=7, instances_per_class=3, unlabeled_per_batch=1, seed=0)
    batches = _batches(sampler)
    assert len(batches) == 3  # ceil(18 labelled / 6)
    for batch in batches:
        assert (labels[batch[:6]] >= 0).all() and labels[batch[6]] == -1
    assert len({b[6] for b in batches}) == 3  # the pool is walked through, not redrawn per batch
    sampler = ClassBalancedSampler(LabelOnlyDataset(labels), batch_size=6, instances_per_class=3, seed=0)
    assert all((labels[b] >= 0).all() for b in _batches(sampler))  # U = 0: unlabelled samples never drawn


@pytest.mark.parametrize('kwargs,match', [
    (dict(batch_size=10, instances_per_class=4), r'10 - 0 = 10 must be a positive multiple of instances_per_class=4'),
    (dict(batch_size=8, instances_per_class=4, unlabeled_per_batch=8), 'must be a positive multiple'),
    (dict(batch_size=16, instances_per_class=4), 'needs P = 4 distinct labelled classes, the dataset has 3'),
    (dict(batch_size=9, instances_per_class=4, unlabeled_per_batch=1), 'no sample with gt_label -1'),
    (dict(batch_size=0, instances_per_class=4), r'batch_size=0, expected an int >= 1'),
    (dict(batch_size=8, instances_per_class=0), r'instances_per_class=0'),
    (dict(batch_size=8, instances_per_class=4, unlabeled_per_batch=-1), r'unlabeled_per_batch=-1'),
    (dict(batch_size=8, instances_per_class=4, seed=-2), r'seed=-2'),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassBalancedSampler(LabelOnlyDataset(_labels([5, 5, 5])), **kwargs)


def test_errors_on_datasets_without_labels():
    with pytest.raises(TypeError, match='neither get_gt_labels'):
        ClassBalancedSampler(list(range(8)), batch_size=4, instances_per_class=2, seed=0)
    with pytest.raises(ValueError, match='gt_label -3'):
        ClassBalancedSampler(LabelOnlyDataset([0, 1, -3]), batch_size=2, instances_per_class=1, seed=0)


def test_seed_none_is_synchronised_random():
    sampler = ClassBalancedSampler(LabelOnlyDataset(_labels([4, 4])), batch_size=4, instances_per_class=2)
    assert isinstance(sampler.seed, int) and sampler.seed >= 0 and len(list(sampler)) == len(sampler) == 8


@pytest.mark.parametrize('num_batch_per_epoch,num_batches', [(None, 3), (1, 1)])
def test_runner_built_dataloader_yields_p_by_k_batches(tmp_path, num_batch_per_epoch, num_batches):
    root = str(tmp_path / 'CUB_200_2011')
    write_cub(root, {c: n for c, n in zip(range(1, 9), [3, 5, 4, 6, 2, 4, 5, 3])}, suffix='.jpg')  # train = classes 1-4
    dataloader = dict(
        batch_size=6,
        num_workers=0,
        dataset=dict(
            type='CUB200Dataset',
            data_root=root,
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='RandomCrop', crop_size=4),
                dict(type='PackEmbeddingInputs')
            ]),
        sampler=dict(type='ClassBalancedSampler', batch_size=6, instances_per_class=2))
    if num_batch_per_epoch:
        dataloader['num_batch_per_epoch'] = num_batch_per_epoch  # mmengine's wrapper: the dataset reports 6 samples
    with DefaultScope.overwrite_default_scope('mmkd'):
        loader = Runner.build_dataloader(dataloader, seed=11)
    assert isinstance(loader.sampler, ClassBalancedSampler) and loader.sampler.seed == 11  # the Runner's seed
    batches = list(loader)
    assert len(batches) == len(loader) == num_batches  # ceil(18 train images / 6), or as many as asked
    for batch in batches:
        assert len(batch['inputs']) == 6 and all(x.shape == (3, 4, 4) for x in batch['inputs'])
        labels = torch.stack([s.gt_label for s in batch['data_samples']]).tolist()
        assert [labels[i] == labels[i + 1] for i in range(0, 6, 2)] == [True] * 3
        assert len(set(labels)) == 3
    assert DATA_SAMPLERS.get('ClassBalancedSampler') is ClassBalancedSampler
