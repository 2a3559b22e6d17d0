"""Evaluate one network of a model of several (a CoLAD pair) beside the one the model validates."""
from typing import Any, Optional, Sequence

from mmengine.evaluator import BaseMetric

from mmkd.registry import SHARED_METRICS


@SHARED_METRICS.register_module()
class NetworkMetric(BaseMetric):
    """Any metric, on the predictions of network ``network`` of a :class:`~mmkd.models.MultiNetworkModel` whose
    ``also_predict`` names it (they are in the data samples' ``<network>_pred_instances`` field, or
    ``<network>_pred_sem_seg`` / ``<network>_seg_logits`` for a segmentor); its results are prefixed
    ``'<network>/'``::

        model = dict(type='CoLAD', networks=dict(r101=..., r50=...), predict_network='r50', also_predict=['r101'])
        val_evaluator = [dict(type='CocoMetric', ...),  # r50: coco/bbox_mAP, ...
                         dict(type='NetworkMetric', network='r101', metric=dict(type='CocoMetric', ...))]
        # r101: r101/coco/bbox_mAP, ...

    Args:
        metric: the metric config (built in the runner's scope: mmdet's ``CocoMetric``, mmseg's ``IoUMetric``...).
        network: the network whose predictions it evaluates.
        collect_device, prefix: as :class:`mmengine.evaluator.BaseMetric` (the wrapped metric collects).
    """

    def __init__(self, metric: dict, network: str, collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.metric = SHARED_METRICS.build(metric)
        self.network = network

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self.metric.dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        self.metric.dataset_meta = dataset_meta

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        renamed = []
        for sample in data_samples:
            fields = [key for key in sample if key.startswith(f'{self.network}_')]
            if not fields:
                raise KeyError(f"NetworkMetric(network={self.network!r}): the data samples carry no "
                               f"'{self.network}_pred_instances' (or other '{self.network}_' prediction): the model "
                               f"must predict with that network too (model.also_predict=['{self.network}'])")
            sample = dict(sample)
            for key in fields:
                sample[key[len(self.network) + 1:]] = sample[key]
            renamed.append(sample)
        self.metric.process(data_batch, renamed)

    def compute_metrics(self, results: list) -> dict:
        raise NotImplementedError('NetworkMetric.evaluate delegates to the wrapped metric')

    def evaluate(self, size: int) -> dict:
        return {f'{self.prefix or self.network}/{key}': value for key, value in self.metric.evaluate(size).items()}
