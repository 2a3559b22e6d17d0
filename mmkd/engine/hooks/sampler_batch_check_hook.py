"""Refuse a training dataloader whose batch size differs from its batch-structured sampler's."""
from mmengine.hooks import Hook

from mmkd.registry import HOOKS


@HOOKS.register_module()
class SamplerBatchCheckHook(Hook):
    """Before training, check that a sampler that lays out whole batches (one with a ``batch_size``, such as
    :class:`~mmkd.datasets.ClassBalancedSampler`: P classes x K images + U unlabelled per batch) has the
    training dataloader's ``batch_size``.

    A sampler only yields indices and cannot see the dataloader that cuts them into batches: with another
    batch size every batch silently mixes parts of two of the sampler's batches (e.g. labelled-only and
    unlabelled-only batches instead of mixed ones). The metric-learning configs add this hook
    (``configs/_base_/metric_runtime.py``).
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        sampler = getattr(loader, 'sampler', None)
        expected = getattr(sampler, 'batch_size', None)
        if expected is not None and loader.batch_size != expected:
            raise ValueError(f'train_dataloader.batch_size={loader.batch_size} but its sampler '
                             f'{type(sampler).__name__} lays out batches of batch_size={expected}: set both to one '
                             'value (the sampler cannot see the dataloader\'s)')
