"""Test-only networks and data for the multi-network tests, registered in mmkd's registries so that a config run
by ``tools/train.py`` reaches them with ``custom_imports=dict(imports=['tests.test_models._tiny_nets'])``."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from mmkd.registry import DATASETS, MODELS


@MODELS.register_module()
class TinyNet(BaseModel):
    """A two-layer perceptron from ``in_dim`` to ``out_dim`` features; loss: mean squared error (``loss_mse``)."""

    def __init__(self, in_dim: int = 4, hidden: int = 8, out_dim: int = 2, data_preprocessor: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[torch.Tensor] = None,
                mode: str = 'tensor',
                scale: float = 1.0):
        """inputs: (B, in_dim); data_samples: (B, out_dim) targets. ``scale`` multiplies the predictions."""
        out = self.layers(inputs)
        if mode == 'loss':
            return dict(loss_mse=F.mse_loss(out, data_samples))
        if mode == 'predict':
            return list(out.detach() * scale)
        return out

    def predict(self, inputs, data_samples=None, scale: float = 1.0):
        return self(inputs, data_samples, mode='predict', scale=scale)

    def _forward(self, inputs, data_samples=None):
        return self(inputs, data_samples)


@DATASETS.register_module()
class TinyVectorDataset(Dataset):
    """``num`` seeded random (in_dim,) inputs; targets (out_dim,) are a fixed nonlinear function of them."""

    def __init__(self, num: int = 16, in_dim: int = 4, out_dim: int = 2, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(num, in_dim, generator=generator)
        self.targets = torch.sin(self.inputs[:, :out_dim] * 2) + self.inputs[:, -out_dim:]**2

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=self.inputs[index], data_samples=self.targets[index])
