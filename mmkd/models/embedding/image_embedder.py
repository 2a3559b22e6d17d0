"""An image-embedding network for metric learning: backbone, global pooling, linear embedding."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import Tensor

from mmkd.registry import DET_MODELS, MODELS
from mmkd.utils.build import build_in_scope

POOLINGS = ('avg', 'avg_max')
DEFAULT_PREPROCESSOR = dict(
    type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)


def sample_labels(data_samples: Sequence[BaseDataElement], device: torch.device) -> Tensor:
    """The (B,) long tensor of the samples' ``gt_label`` (-1 = unlabelled).

    Raises:
        KeyError: a sample has no ``gt_label`` (its pipeline did not end with ``PackEmbeddingInputs``).
    """
    labels = []
    for i, sample in enumerate(data_samples):
        if 'gt_label' not in sample:
            raise KeyError(f'data sample {i} has no gt_label: the training pipeline must end with PackEmbeddingInputs '
                           'and the dataset give a gt_label per image')
        labels.append(torch.as_tensor(sample.gt_label).reshape(()))
    return torch.stack(labels).to(device=device, dtype=torch.long)


@MODELS.register_module()
class ImageEmbedder(BaseModel):
    """Backbone -> global pooling of its last map -> linear embedding -> optional L2 normalisation.

    The embedding networks of Yu et al., "Learning Metrics from Teachers: Compact Networks for Image
    Embedding" (CVPR 2019): an ImageNet backbone, average pooling, a linear 512-d embedding trained with a
    triplet loss. Intermediate maps for hint and attention losses are reached by submodule name through
    :class:`~mmkd.models.utils.FeatureRecorder` (``'backbone.layer1'``, ... for mmdet's ResNet).

    Args:
        backbone: an mmdet backbone config (``ResNet``, ``MobileNetV2``, ...; built with mmdet's registry); its
            last output map is pooled.
        embed_dim: size of the embedding.
        pooling: ``'avg'`` (global average) or ``'avg_max'`` (global average plus global max, summed).
        normalize: L2-normalise the embedding (what the model returns in training and in ``predict``).
        loss: the metric-learning loss config (e.g. ``BatchHardTripletLoss``), called as
            ``loss(embeddings (B, D), labels (B,))``; ``None`` for a model that is only distilled or only
            evaluated (``loss()`` then refuses).
        feat_channels: channels of the backbone's last map; default: found by running the backbone once on a
            64 x 64 image at construction.
        data_preprocessor: default: mmengine's ``ImgDataPreprocessor`` with ImageNet mean / std, BGR -> RGB.
    """

    def __init__(self,
                 backbone: dict,
                 embed_dim: int = 512,
                 pooling: str = 'avg',
                 normalize: bool = False,
                 loss: Optional[dict] = None,
                 feat_channels: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(data_preprocessor=data_preprocessor or dict(DEFAULT_PREPROCESSOR), init_cfg=init_cfg)
        if pooling not in POOLINGS:
            raise ValueError(f'ImageEmbedder pooling must be one of {POOLINGS}, got {pooling!r}')
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f'ImageEmbedder embed_dim must be a positive int, got {embed_dim!r}')
        self.backbone = build_in_scope(backbone, DET_MODELS) if isinstance(backbone, dict) else backbone
        self.pooling = pooling
        self.normalize = normalize
        self.embed_dim = embed_dim
        if feat_channels is None:
            feat_channels = self._probe_channels()
        self.embedding = nn.Linear(feat_channels, embed_dim)
        self.loss_module = build_in_scope(loss, MODELS) if isinstance(loss, dict) else loss
        # the config of the loss, for models that build more criteria like it (S2SD's target branches)
        self._loss_cfg = copy.deepcopy(loss) if isinstance(loss, dict) else None

    def _probe_channels(self) -> int:
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            channels = self.backbone(torch.zeros(1, 3, 64, 64))[-1].shape[1]
        self.backbone.train(was_training)
        return int(channels)

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """The backbone's output maps for (B, 3, H, W) ``inputs``."""
        feats = self.backbone(inputs)
        return tuple(feats) if isinstance(feats, (list, tuple)) else (feats, )

    def pool(self, feats: Tuple[Tensor, ...], pooling: Optional[str] = None) -> Tensor:
        """(B, C) global pooling of the last map, ``pooling`` (one of ``POOLINGS``) or else the model's own."""
        last = feats[-1]
        pooled = F.adaptive_avg_pool2d(last, 1).flatten(1)
        if (pooling or self.pooling) == 'avg_max':
            pooled = pooled + F.adaptive_max_pool2d(last, 1).flatten(1)
        return pooled

    def head(self, pooled: Tensor) -> Tensor:
        """(B, D) embeddings of (B, C) pooled features."""
        embeddings = self.embedding(pooled)
        return F.normalize(embeddings, dim=1) if self.normalize else embeddings

    def embed(self, inputs: Tensor) -> Tensor:
        """(B, D) embeddings of (B, 3, H, W) normalised images."""
        return self.head(self.pool(self.extract_feat(inputs)))

    def metric_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The metric-learning loss of (B, D) ``embeddings`` with (B,) ``labels`` (-1 rows ignored by the loss)."""
        if self.loss_module is None:
            raise RuntimeError('this ImageEmbedder has no metric-learning loss (loss=None): give it one to train it '
                               'on labels, or train it through a distiller that does without')
        return self.loss_module(embeddings, labels)

    def loss(self, inputs: Tensor, data_samples: Sequence[BaseDataElement]) -> Dict[str, Tensor]:
        labels = sample_labels(data_samples, inputs.device)
        return dict(loss_metric=self.metric_loss(self.embed(inputs), labels))

    def predict(self,
                inputs: Tensor,
                data_samples: Optional[Sequence[BaseDataElement]] = None) -> List[BaseDataElement]:
        """The data samples (new ones when ``None``) with ``pred_embedding``, a (D,) tensor each."""
        embeddings = self.embed(inputs).detach()
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(len(inputs))]
        for sample, embedding in zip(data_samples, embeddings):
            # a copy, not a view of the batch: a saved or gathered sample must not carry the whole batch's storage
            sample.pred_embedding = embedding.clone()
        return list(data_samples)

    def _forward(self, inputs: Tensor, data_samples=None) -> Tensor:
        return self.embed(inputs)

    def forward(self, inputs: Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor mode')
