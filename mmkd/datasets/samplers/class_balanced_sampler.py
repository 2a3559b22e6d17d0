"""P classes x K instances per batch, for metric learning losses that mine pairs inside a batch."""
import math
from collections import deque
from typing import Iterator, List, Optional, Sized

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmkd.registry import DATA_SAMPLERS


def _dataset_labels(dataset: Sized) -> np.ndarray:
    """``gt_label`` of every sample of ``dataset``, shape (N,), without loading images."""
    if hasattr(dataset, 'get_gt_labels'):
        labels = np.asarray(dataset.get_gt_labels(), dtype=np.int64)
    elif hasattr(dataset, 'get_data_info'):
        labels = np.array([dataset.get_data_info(i)['gt_label'] for i in range(len(dataset))], dtype=np.int64)
    else:
        raise TypeError(f'ClassBalancedSampler: the dataset {type(dataset).__name__} has neither get_gt_labels() '
                        'nor get_data_info(i)[\'gt_label\']: cannot tell the class of a sample without loading it')
    return labels


@DATA_SAMPLERS.register_module()
class ClassBalancedSampler(Sampler):
    """Batches of P labelled classes x K instances (+ U unlabelled samples), classes visited evenly.

    Each batch of ``batch_size`` indices holds ``P = (batch_size - U) / K`` distinct labelled classes with
    ``K = instances_per_class`` images each (class after class), then ``U = unlabeled_per_batch`` samples with
    ``gt_label == -1`` (the semi-supervised mixed batches). The sampler yields the indices of its batches one
    after the other, so the dataloader's ``batch_size`` must equal ``batch_size`` here (the sampler cannot see
    the dataloader's: a different value silently mixes batches), with ``drop_last=False``.

    The classes of consecutive batches are drawn from random permutations of all labelled classes laid end to
    end (a class that would repeat inside a batch at the seam of two permutations moves to the next batch), so
    within an epoch every class appears the same number of times, give or take one. A class with at least K
    images gives K distinct ones, drawn at random; a class with fewer gives all of them plus random repeats
    (sampling with replacement). Unlabelled samples come from random permutations of the ``-1`` pool laid end
    to end. An epoch has ``ceil(#labelled samples / (P * K))`` batches, rounded up to a multiple of the world
    size; labelled samples are drawn, so a large class may leave some images unseen in an epoch. Under mmengine's
    ``num_batch_per_epoch`` (a debugging option that makes the dataset report fewer samples) the batches still
    come from all classes, and an epoch has at most ``ceil(len(dataset) / batch_size)`` of them.

    Distributed: every rank builds the same global sequence of batches from ``seed`` and the epoch, and rank
    ``r`` of ``w`` (from :func:`mmengine.dist.get_dist_info`) takes batches ``r, r + w, r + 2w, ...``: disjoint
    batches, the same number on every rank. ``set_epoch`` (called by mmengine's loops) reshuffles.

    Built by mmengine's Runner as ``DATA_SAMPLERS.build(sampler_cfg, default_args=dict(dataset=..., seed=...))``,
    so a config gives ``sampler=dict(type='ClassBalancedSampler', batch_size=32, instances_per_class=8)`` beside
    ``batch_size=32``.

    Args:
        dataset: a dataset with ``get_gt_labels()`` (:class:`~mmkd.datasets.RetrievalDataset`) or
            ``get_data_info(i)['gt_label']``.
        batch_size: samples per batch, ``P * K + U``.
        instances_per_class: K, images per class in a batch (the paper: 8).
        unlabeled_per_batch: U, unlabelled samples per batch.
        seed: shared random seed of all ranks; None = a random seed synchronised across ranks.
    """

    def __init__(self,
                 dataset: Sized,
                 batch_size: int,
                 instances_per_class: int = 8,
                 unlabeled_per_batch: int = 0,
                 seed: Optional[int] = None):
        for name, value, low in (('batch_size', batch_size, 1), ('instances_per_class', instances_per_class, 1),
                                 ('unlabeled_per_batch', unlabeled_per_batch, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f'ClassBalancedSampler: {name}={value!r}, expected an int >= {low}')
        labelled_size = batch_size - unlabeled_per_batch
        if labelled_size <= 0 or labelled_size % instances_per_class:
            raise ValueError(f'ClassBalancedSampler: batch_size - unlabeled_per_batch = {batch_size} - '
                             f'{unlabeled_per_batch} = {labelled_size} must be a positive multiple of '
                             f'instances_per_class={instances_per_class} (P classes x K instances)')
        if seed is None:
            seed = sync_random_seed()
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f'ClassBalancedSampler: seed={seed!r}, expected a non-negative int or None')
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.instances_per_class = int(instances_per_class)
        self.unlabeled_per_batch = int(unlabeled_per_batch)
        self.classes_per_batch = labelled_size // instances_per_class
        self.seed = int(seed)
        self.epoch = 0
        self.rank, self.world_size = get_dist_info()

        labels = _dataset_labels(dataset)
        if (labels < -1).any():
            raise ValueError(f'ClassBalancedSampler: gt_label {labels.min()} in the dataset, expected labels >= 0 '
                             'or -1 (unlabelled)')
        self.class_members: List[np.ndarray] = [np.flatnonzero(labels == c) for c in np.unique(labels[labels >= 0])]
        self.unlabeled_pool = np.flatnonzero(labels == -1)
        if len(self.class_members) < self.classes_per_batch:
            raise ValueError(f'ClassBalancedSampler: a batch needs P = {self.classes_per_batch} distinct labelled '
                             f'classes, the dataset has {len(self.class_members)} with labelled images')
        if self.unlabeled_per_batch and not len(self.unlabeled_pool):
            raise ValueError(f'ClassBalancedSampler: unlabeled_per_batch={self.unlabeled_per_batch} but the dataset '
                             'has no sample with gt_label -1 (set unlabeled_fraction on the dataset, without '
                             'drop_unlabeled)')
        num_labelled = sum(len(m) for m in self.class_members)
        num_batches = math.ceil(num_labelled / labelled_size)
        if len(dataset) < len(labels):
            # mmengine's num_batch_per_epoch wraps the dataset in one that reports fewer samples but reads all of
            # them (get_gt_labels is forwarded): sample from every class, only fewer batches
            num_batches = min(num_batches, math.ceil(len(dataset) / self.batch_size))
        self.batches_per_rank = math.ceil(num_batches / self.world_size)

    def _global_batches(self) -> List[np.ndarray]:
        """All ranks' batches of the current epoch, each an index array of shape (batch_size,)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        num_classes, k = len(self.class_members), self.instances_per_class
        class_queue: deque = deque()
        unlabeled_queue: deque = deque()
        batches = []
        for _ in range(self.batches_per_rank * self.world_size):
            chosen: List[int] = []
            deferred: List[int] = []
            while len(chosen) < self.classes_per_batch:
                if not class_queue:
                    class_queue.extend(rng.permutation(num_classes).tolist())
                c = class_queue.popleft()
                (deferred if c in chosen else chosen).append(c)
            class_queue.extendleft(reversed(deferred))
            parts = []
            for c in chosen:
                members = self.class_members[c]
                if len(members) >= k:
                    parts.append(rng.choice(members, k, replace=False))
                else:
                    parts.append(np.concatenate([rng.permutation(members), rng.choice(members, k - len(members))]))
            if self.unlabeled_per_batch:
                while len(unlabeled_queue) < self.unlabeled_per_batch:
                    unlabeled_queue.extend(rng.permutation(self.unlabeled_pool).tolist())
                parts.append(np.array([unlabeled_queue.popleft() for _ in range(self.unlabeled_per_batch)]))
            batches.append(np.concatenate(parts))
        return batches

    def __iter__(self) -> Iterator[int]:
        batches = self._global_batches()[self.rank::self.world_size]
        return iter(np.concatenate(batches).tolist())

    def __len__(self) -> int:
        return self.batches_per_rank * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Use the batches of ``epoch`` (all ranks must pass the same value)."""
        self.epoch = epoch
