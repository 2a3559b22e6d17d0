"""Test-only components registered in mmkd's own registries (scope 'mmkd'): a linear regressor on 2-d points,
its dataset, transform, sampler and metric. tests/data/tiny-regressor_points_mmkd-scope.py trains them through
the stock tools with ``default_scope='mmkd'``; none of them is reachable from mmengine's root registries."""
from typing import Iterator, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch.utils.data import Sampler

from mmkd.registry import DATA_SAMPLERS, DATASETS, METRICS, MODELS, TRANSFORMS


def make_points(num: int, seed: int) -> torch.Tensor:
    """The points of :class:`TinyPointsDataset`, shape (num, 2)."""
    return torch.randn(num, 2, generator=torch.Generator().manual_seed(seed))


@MODELS.register_module()
class TinyRegressor(BaseModel):
    """``y = w . x + b`` for 2-d points ``x``; loss: mean squared error (logged as ``loss_mse``)."""

    def __init__(self, data_preprocessor: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, mode: str = 'tensor'):
        """inputs: (B, 2), targets: (B,). Returns the loss dict, a list of (prediction, target) pairs or (B,)."""
        out = self.fc(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss_mse=((out - targets)**2).mean())
        if mode == 'predict':
            return list(zip(out.detach(), targets))
        return out


@DATASETS.register_module()
class TinyPointsDataset(BaseDataset):
    """``num`` random 2-d points (seeded); the target of a point is the sum of its coordinates."""

    def __init__(self, num: int = 8, seed: int = 0, **kwargs):
        self.num, self.seed = num, seed
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self) -> List[dict]:
        points = make_points(self.num, self.seed)
        return [dict(inputs=p, targets=p.sum()) for p in points]


@TRANSFORMS.register_module()
class ShiftTarget:
    """Adds ``shift`` to the target and keeps only ``inputs`` and ``targets`` (the model's arguments)."""

    def __init__(self, shift: float):
        self.shift = shift

    def __call__(self, results: dict) -> dict:
        return dict(inputs=results['inputs'], targets=results['targets'] + self.shift)


@DATA_SAMPLERS.register_module()
class ReversedSampler(Sampler):
    """The dataset's indices, last first (``seed``, which the Runner gives every sampler, is not needed)."""

    def __init__(self, dataset: Sequence, seed: Optional[int] = None):
        self.size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.size - 1, -1, -1))

    def __len__(self) -> int:
        return self.size


@METRICS.register_module()
class TinyMSEMetric(BaseMetric):
    """Mean squared error of the predictions, reported as ``tiny/mse``."""
    default_prefix = 'tiny'

    def process(self, data_batch, data_samples: Sequence) -> None:
        self.results.extend(float((pred - target)**2) for pred, target in data_samples)

    def compute_metrics(self, results: list) -> dict:
        return dict(mse=sum(results) / len(results))
