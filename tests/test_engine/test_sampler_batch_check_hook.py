"""SamplerBatchCheckHook: a train dataloader whose batch size differs from its ClassBalancedSampler's is refused
before training (the sampler alone cannot see it), and the metric-learning runtime has it."""
import os.path as osp
from types import SimpleNamespace

import pytest
from mmengine.config import Config
from torch.utils.data import DataLoader

from mmkd.datasets import ClassBalancedSampler
from mmkd.engine.hooks import SamplerBatchCheckHook
from ..conftest import CONFIGS


class Labels:

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def get_data_info(self, i):
        return dict(gt_label=self.labels[i])


def runner_with(loader_batch, sampler_batch):
    dataset = Labels([c for c in range(4) for _ in range(8)] + [-1] * 16)
    sampler = ClassBalancedSampler(
        dataset, batch_size=sampler_batch, instances_per_class=8, unlabeled_per_batch=8, seed=0)
    return SimpleNamespace(train_dataloader=DataLoader(dataset, batch_size=loader_batch, sampler=sampler))


def test_mismatch_refused_match_passes():
    with pytest.raises(ValueError, match='train_dataloader.batch_size=16 but its sampler ClassBalancedSampler'):
        SamplerBatchCheckHook().before_train(runner_with(16, 24))
    SamplerBatchCheckHook().before_train(runner_with(24, 24))
    SamplerBatchCheckHook().before_train(SimpleNamespace(train_dataloader=DataLoader(list(range(4)), batch_size=2)))


def test_metric_runtime_checks_batches_and_syncs_bn_statistics():
    cfg = Config.fromfile(osp.join(CONFIGS, 'metric_kd', 'metric-kd-rel_r18-w16-r18-w4_toy.py'))
    assert {h['type'] for h in cfg.custom_hooks} >= {'SamplerBatchCheckHook', 'SyncBuffersHook'}
