"""S2SD: simultaneous similarity-based self-distillation of an embedding network.

Roth, Milbich, Ommer, Cohen, Ghassemi, "Simultaneous Similarity-based Self-Distillation for Deep Metric
Learning" (ICML 2021). Beside the base embedding, auxiliary target branches embed the pooled backbone feature in
higher dimensions, each trained with its own copy of the base DML criterion; the base embedding learns the
targets' batch similarities through a KL divergence of row-softmaxed cosine similarity matrices (Eq. 3):

    L = (L_base + mean_i L_target_i) / 2 + gamma * mean_i KL(S_target_i, S_base) [+ w_feat * KL(S_feat, S_base)]

The branches are training-time only: inference and export use the base embedder alone.
"""
import copy
import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import Tensor

from mmkd.models.losses.embedding_distillation import _is_number
from mmkd.models.losses.metric_learning import _MetricLoss
from mmkd.models.losses.ssim import _autocast_disabled
from mmkd.models.utils import Deployable
from mmkd.registry import MODELS
from mmkd.utils.build import build_in_scope
from .image_embedder import DEFAULT_PREPROCESSOR, POOLINGS, ImageEmbedder, sample_labels

# below this temperature the KL terms all but vanish (see similarity_kl)
SMALL_TEMPERATURE = 0.1


def cosine_similarities(embeddings: Tensor) -> Tensor:
    """(B, B) cosine similarities of the rows of ``embeddings`` (B, D): ``E E^T`` of the L2-normalised rows,
    diagonal kept (as in S2SD)."""
    normalised = F.normalize(embeddings, dim=1)
    return normalised @ normalised.t()


def similarity_kl(source: Tensor, target: Tensor, temperature: float = 1.0) -> Tensor:
    """The distillation term of S2SD (Eq. 3; ``kl_div`` of the paper's pseudo-code, supplementary Sec. F).

    ``sum_ij p_ij (log p_ij - log q_ij) * T^2 / B`` with ``p = softmax(target / T)`` and
    ``q = softmax(source / T)`` row by row: the KL divergence of each row of the source similarities from the
    target's, summed over the rows, scaled by ``T^2`` and averaged over the batch. Both arguments keep their
    autograd graph: detach the target to distil into the source only.

    The diagonal (self-similarity 1) is kept, as in the paper, so a small T starves the KL: each row's diagonal
    exceeds its other entries by at least ``m = 1 - max_{j != i} S_ij``; once T is well below m the diagonal takes
    nearly all of the row's softmax mass in both ``p`` and ``q``, and the KL and its gradient fall off roughly like
    ``exp(-m / T)`` (a random batch of 32, 8-d source, 64-d target: KL 5.6e-2 at T = 1, 8.3e-4 at T = 0.1,
    2.3e-30 at T = 0.01). The paper uses T = 1; below 0.1 S2SD gets next to no distillation signal.

    Args:
        source: (B, B) similarities of the embedding that learns (the base embedding).
        target: (B, B) similarities it learns from (a target branch, or the pooled features).
        temperature: T > 0 (1 in the paper; see above for small values).

    Returns:
        Tensor: a scalar, >= 0.
    """
    if source.dim() != 2 or source.shape[0] != source.shape[1] or source.shape != target.shape:
        raise ValueError(f'similarity_kl: source {tuple(source.shape)} and target {tuple(target.shape)} must be '
                         'square similarity matrices (B, B) of one batch')
    log_q = F.log_softmax(source / temperature, dim=1)
    log_p = F.log_softmax(target / temperature, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum() * temperature**2 / source.shape[0]


def _normalised_cfg(cfg):
    """``cfg`` with lists and tuples as lists and a ``type`` by its last dotted part (``'mmengine.X'`` -> ``'X'``):
    two spellings of one setting compare equal."""
    if isinstance(cfg, dict):
        return {
            key: value.rsplit('.', 1)[-1] if key == 'type' and isinstance(value, str) else _normalised_cfg(value)
            for key, value in cfg.items()
        }
    if isinstance(cfg, (list, tuple)):
        return [_normalised_cfg(value) for value in cfg]
    return cfg


class TargetBranch(nn.Sequential):
    """An auxiliary target embedding of S2SD: Linear(C, D) - ReLU - Linear(D, D); L2-normalised by the caller."""

    def __init__(self, in_channels: int, embed_dim: int):
        super().__init__(nn.Linear(in_channels, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))


@MODELS.register_module()
class S2SDEmbedder(Deployable, BaseModel):
    """An :class:`ImageEmbedder` trained with S2SD's auxiliary target branches (DSD, MSD, F, A).

    The variants of the paper are settings of this model:

    * DSD: one target branch, ``target_dims=(2048, )``;
    * MSD: several, ``target_dims=(512, 1024, 1536, 2048)`` (the default);
    * F: ``feat_distill_weight > 0`` (50; 5 on SOP) and :class:`~mmkd.engine.hooks.S2SDFeatureDistillationHook`
      in ``custom_hooks``, which switches the term on after its ``start_iter`` (1000) iterations: the base
      similarities also learn those of the L2-normalised, detached pooled backbone features;
    * A: ``target_pooling='avg_max'``: the target branches (and F) take the sum of the global average and max
      pooled features; the base embedding keeps the embedder's own pooling.

    Inference (``predict``, ``tensor`` mode) is the base embedder's and costs nothing more;
    ``tools/export_student.py`` writes the embedder alone (a plain :class:`ImageEmbedder`).

    Args:
        embedder: the base :class:`ImageEmbedder` config; it must normalise its embedding (S2SD's similarities
            are cosines) and have a metric ``loss`` (the base criterion).
        target_dims: embedding sizes of the target branches (one branch each).
        target_loss: the criterion of each target branch (each branch builds its own copy, with its own
            learnable parameters); default: a copy of the embedder's ``loss``. A config with an
            ``embedding_size`` key (``ProxyAnchorLoss``) gets the branch's size there.
        target_pooling: ``'avg'`` or ``'avg_max'`` (the A variant): the pooled input of the target branches
            and of feature distillation.
        distill_weight: gamma, the weight of the mean KL of the target branches (50).
        temperature: T of the softmax (1, the paper's). Below 0.1 the kept diagonal takes nearly all of each
            softmax row and the KL terms vanish (see :func:`similarity_kl`); the model warns then.
        detach_targets: distil into the base embedding only (the paper's method); False lets the KL's gradient
            reach the target branches too (the paper's ablation, supplementary Sec. E.a).
        feat_distill_weight: weight of the feature distillation term (the F variant; 0 = none).
        data_preprocessor: default: the embedder's (or ImageNet mean / std, BGR -> RGB). Given with an embedder
            config that has one too, the two must be equal; not allowed with a built embedder, whose own
            preprocessor (the one export keeps) is the model's.
    """

    def __init__(self,
                 embedder: Union[dict, ImageEmbedder],
                 target_dims: Sequence[int] = (512, 1024, 1536, 2048),
                 target_loss: Optional[dict] = None,
                 target_pooling: str = 'avg',
                 distill_weight: float = 50.0,
                 temperature: float = 1.0,
                 detach_targets: bool = True,
                 feat_distill_weight: float = 0.0,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        if isinstance(embedder, dict):
            embedder_preprocessor = embedder.get('data_preprocessor')
            if data_preprocessor is not None and embedder_preprocessor is not None and \
                    _normalised_cfg(data_preprocessor) != _normalised_cfg(embedder_preprocessor):
                raise ValueError('S2SDEmbedder: data_preprocessor differs from embedder.data_preprocessor; give it '
                                 'once (in the embedder, which is what export keeps)')
            preprocessor = copy.deepcopy(data_preprocessor or embedder_preprocessor or DEFAULT_PREPROCESSOR)
        elif data_preprocessor is not None:
            raise ValueError('S2SDEmbedder: data_preprocessor given with a built embedder, whose own preprocessor is '
                             'what training uses and export keeps: build the embedder with it instead')
        else:
            # the built embedder's module itself, so training and the exported embedder preprocess alike
            preprocessor = getattr(embedder, 'data_preprocessor', None)
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        if isinstance(embedder, dict):
            embedder = build_in_scope(dict(embedder, type=embedder.get('type', 'ImageEmbedder')), MODELS)
        if not isinstance(embedder, ImageEmbedder):
            raise TypeError(f'S2SDEmbedder: embedder must be an ImageEmbedder, got {type(embedder).__name__}')
        if not embedder.normalize:
            raise ValueError('S2SDEmbedder: the embedder must have normalize=True: S2SD distils cosine similarities '
                             'and trains the base criterion on L2-normalised embeddings')
        if embedder.loss_module is None:
            raise ValueError('S2SDEmbedder: the embedder needs a metric loss (the base criterion), got loss=None')
        if isinstance(target_dims, int) or not isinstance(target_dims, Sequence) or not target_dims or \
                not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in target_dims):
            raise ValueError(f'S2SDEmbedder: target_dims must be a non-empty list of positive ints, got '
                             f'{target_dims!r}')
        if target_pooling not in POOLINGS:
            raise ValueError(f'S2SDEmbedder: target_pooling must be one of {POOLINGS}, got {target_pooling!r}')
        for name, value in dict(distill_weight=distill_weight, feat_distill_weight=feat_distill_weight).items():
            if not _is_number(value) or not math.isfinite(value) or not value >= 0:
                raise ValueError(f'S2SDEmbedder: {name} must be a finite number >= 0, got {value!r}')
        if not _is_number(temperature) or not math.isfinite(temperature) or not temperature > 0:
            raise ValueError(f'S2SDEmbedder: temperature must be a finite number > 0, got {temperature!r}')
        if temperature < SMALL_TEMPERATURE:
            print_log(
                f'S2SDEmbedder: temperature={temperature} < {SMALL_TEMPERATURE}: the kept diagonal takes nearly all '
                'of each softmax row, so the distillation KL terms (and their gradients) all but vanish; the '
                'paper uses 1',
                logger='current',
                level=logging.WARNING)
        if not isinstance(detach_targets, bool):
            raise ValueError(f'S2SDEmbedder: detach_targets must be a bool, got {detach_targets!r}')
        if target_loss is None:
            target_loss = self._embedder_loss_cfg(embedder)
        self.embedder = embedder
        self.target_dims = tuple(target_dims)
        self.target_pooling = target_pooling
        self.distill_weight = float(distill_weight)
        self.temperature = float(temperature)
        self.detach_targets = detach_targets
        self.feat_distill_weight = float(feat_distill_weight)
        # set before each training iteration by S2SDFeatureDistillationHook; None = no hook has run
        self.feature_distillation: Optional[bool] = None
        channels = embedder.embedding.in_features
        self.target_branches = nn.ModuleList(TargetBranch(channels, dim) for dim in self.target_dims)
        self.target_losses = nn.ModuleList(
            build_in_scope(self._branch_loss_cfg(target_loss, dim), MODELS) for dim in self.target_dims)
        if not isinstance(self.target_losses[0], _MetricLoss):
            raise TypeError(f'S2SDEmbedder: target_loss (default: the embedder\'s loss) type='
                            f'{target_loss.get("type")!r} builds {type(self.target_losses[0]).__name__}, which is not '
                            'a metric-learning loss: expected one of mmkd.models.losses.metric_learning (e.g. '
                            'MultiSimilarityLoss), called as loss(embeddings (B, D), labels (B, ))')

    @staticmethod
    def _embedder_loss_cfg(embedder: ImageEmbedder) -> dict:
        cfg = getattr(embedder, '_loss_cfg', None)
        if cfg is None:
            raise ValueError('S2SDEmbedder: give target_loss (the criterion of the target branches) when the '
                             'embedder is a built module, whose loss config is unknown')
        return cfg

    @staticmethod
    def _branch_loss_cfg(target_loss: dict, dim: int) -> dict:
        if not isinstance(target_loss, dict):
            raise TypeError(f'S2SDEmbedder: target_loss must be a loss config (dict), got {type(target_loss).__name__}'
                            ': each target branch builds its own copy')
        cfg = copy.deepcopy(target_loss)
        if 'embedding_size' in cfg:
            cfg['embedding_size'] = dim
        return cfg

    @classmethod
    def deployable(cls, model_cfg: dict) -> Tuple[str, dict]:
        """The base embedder, with the model's data preprocessor.

        Raises:
            KeyError: ``model_cfg`` has no ``embedder``.
            TypeError: its ``embedder`` is not a config dict.
        """
        if 'embedder' not in model_cfg:
            raise KeyError("S2SDEmbedder.deployable: the model config has no 'embedder' key (the config of the base "
                           'ImageEmbedder that export writes)')
        if not isinstance(model_cfg['embedder'], dict):
            raise TypeError("S2SDEmbedder.deployable: the model config's 'embedder' must be a config dict (of the "
                            f"base ImageEmbedder), got {type(model_cfg['embedder']).__name__}")
        embedder = copy.deepcopy(model_cfg['embedder'])
        embedder.setdefault('type', 'ImageEmbedder')
        if model_cfg.get('data_preprocessor') is not None:
            embedder.setdefault('data_preprocessor', copy.deepcopy(model_cfg['data_preprocessor']))
        return 'embedder', embedder

    @property
    def deployable_network(self) -> nn.Module:
        return self.embedder

    def target_pool(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """(B, C) input of the target branches: the last map's global average (+ max for ``'avg_max'``) pool."""
        return self.embedder.pool(feats, self.target_pooling)

    def forward_train(self, inputs: Tensor) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """(base embeddings (B, D), target-branch input (B, C), target embeddings [(B, D_i)]), all L2-normalised
        except the pooled input."""
        feats = self.embedder.extract_feat(inputs)
        base = self.embedder.head(self.embedder.pool(feats))
        pooled = self.target_pool(feats)
        targets = [F.normalize(branch(pooled), dim=1) for branch in self.target_branches]
        return base, pooled, targets

    def s2sd_losses(self, base: Tensor, pooled: Tensor, targets: Sequence[Tensor], labels: Tensor,
                    feature_distillation: bool) -> Dict[str, Tensor]:
        """The S2SD objective of one batch, as logged terms whose sum is the total (Eq. 3 + F).

        Args:
            base: (B, D) base embeddings.
            pooled: (B, C) target-branch input (for feature distillation).
            targets: the (B, D_i) target embeddings.
            labels: (B, ) labels (-1 = unlabelled: left out of the DML criteria, kept in the KL terms).
            feature_distillation: include the F term (needs ``feat_distill_weight > 0``).

        Returns:
            dict: ``loss_base`` = L_base / 2, ``loss_target`` = mean L_target / 2, ``loss_distill`` =
            gamma * mean KL, and with F ``loss_feat_distill`` = w_feat * KL(S_feat, S_base).
        """
        losses = dict(loss_base=self.embedder.metric_loss(base, labels) / 2)
        target_losses = [criterion(target, labels) for criterion, target in zip(self.target_losses, targets)]
        losses['loss_target'] = torch.stack(target_losses).mean() / 2
        with _autocast_disabled(base.device.type):
            source = cosine_similarities(base.float())
            kls = []
            for target in targets:
                target_sim = cosine_similarities(target.float())
                if self.detach_targets:
                    target_sim = target_sim.detach()
                kls.append(similarity_kl(source, target_sim, self.temperature))
            losses['loss_distill'] = self.distill_weight * torch.stack(kls).mean()
            if self.feat_distill_weight > 0:
                if feature_distillation:
                    feat_sim = cosine_similarities(pooled.detach().float())
                    losses['loss_feat_distill'] = self.feat_distill_weight * similarity_kl(
                        source, feat_sim, self.temperature)
                else:
                    losses['loss_feat_distill'] = source.sum() * 0
        return losses

    def loss(self, inputs: Tensor, data_samples: Sequence[BaseDataElement]) -> Dict[str, Tensor]:
        if self.feat_distill_weight > 0 and self.feature_distillation is None:
            raise RuntimeError('S2SDEmbedder has feat_distill_weight > 0 but no S2SDFeatureDistillationHook has set '
                               "its switch: add dict(type='S2SDFeatureDistillationHook', start_iter=1000) to "
                               'custom_hooks (or set model.feature_distillation when calling loss() directly)')
        labels = sample_labels(data_samples, inputs.device)
        base, pooled, targets = self.forward_train(inputs)
        return self.s2sd_losses(base, pooled, targets, labels, bool(self.feature_distillation))

    def predict(self,
                inputs: Tensor,
                data_samples: Optional[Sequence[BaseDataElement]] = None) -> List[BaseDataElement]:
        """The base embedder's prediction: ``pred_embedding`` (D,) per sample; the branches are not run."""
        return self.embedder.predict(inputs, data_samples)

    def forward(self, inputs: Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.embedder.embed(inputs)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor mode')
