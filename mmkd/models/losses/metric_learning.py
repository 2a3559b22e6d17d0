"""Deep-metric-learning losses: registered wrappers of pytorch-metric-learning's losses and miners.

Each wrapper is called as ``loss(embeddings (B, D), labels (B, ))`` and returns ``loss_weight`` times pml's loss
of the labelled rows, a float32 scalar. What the wrappers add to pml:

* semi-supervised batches: rows labelled -1 are unlabelled and left out before pml sees the batch; when what is
  left cannot give a loss (fewer than 2 labelled rows, or no two of one class; for :class:`ProxyAnchorLoss`: no
  labelled row), the loss is ``embeddings.sum() * 0``: a zero that keeps the autograd graph (no NaN, every
  embedding gets a zero gradient);
* mixed precision: the embeddings are cast to float32 and the loss runs with autocast disabled;
* learnable parameters (MarginLoss's beta, ProxyAnchor's proxies) are parameters of the ``loss`` submodule, so the
  optimizer of the model holding the wrapper updates them; they always take part in the graph (with a zero
  gradient when a batch gives them none), so DDP never finds them unused;
* checks with messages that name the tensors and their shapes.
"""
from typing import Optional

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import AvgNonZeroReducer, MeanReducer
from torch import Tensor

from mmkd.registry import MODELS
from .embedding_distillation import _is_number, _WeightedLoss
from .ssim import _autocast_disabled

TRIPLET_REDUCTIONS = ('nonzero_mean', 'mean')


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class _MetricLoss(_WeightedLoss):
    """Shared forward of the wrappers: checks, removal of the unlabelled rows, float32, ``loss_weight``;
    subclasses build ``self.loss`` (and a miner) and define :meth:`_loss` on labelled float32 rows."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The weighted loss of a batch.

        Args:
            embeddings: (B, D), any floating dtype.
            labels: (B, ) integer class labels, 0-based; -1 marks an unlabelled row (ignored).

        Returns:
            Tensor: a float32 scalar; ``embeddings.sum() * 0`` (a zero that keeps the graph) when the labelled rows
            cannot give a loss (fewer than 2, or no two of one class; for :class:`ProxyAnchorLoss`: none).
        """
        self._check(embeddings, labels)
        with _autocast_disabled(embeddings.device.type):
            embeddings = embeddings.float()
            labels = labels.to(embeddings.device, torch.long)
            labelled = labels != -1
            labelled_embeddings, labelled_labels = embeddings[labelled], labels[labelled]
            if self._can_learn_from(labelled_labels):
                loss = self._loss(labelled_embeddings, labelled_labels)
            else:
                loss = embeddings.sum() * 0
            for parameter in self.parameters():
                loss = loss + parameter.sum() * 0
            return self.loss_weight * loss

    def _check(self, embeddings: Tensor, labels: Tensor) -> None:
        name = type(self).__name__
        if not isinstance(embeddings, Tensor) or embeddings.dim() != 2 or not embeddings.is_floating_point():
            shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings).__name__
            raise ValueError(f'{name}: embeddings must be a floating tensor (B, D), got {shape}')
        if (not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]
                or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool):
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f'{name}: labels must be an integer tensor (B, ) for embeddings '
                             f'{tuple(embeddings.shape)}, got {shape}')
        if not bool(torch.isfinite(embeddings).all()):
            raise ValueError(f'{name}: embeddings {tuple(embeddings.shape)} hold nan or inf values (training diverged, '
                             'or the inputs do): a metric loss of them would be meaningless')
        if labels.numel() and labels.min() < -1:
            raise ValueError(f'{name}: labels must be class indices >= 0 or -1 (unlabelled), got {int(labels.min())}')

    def _can_learn_from(self, labels: Tensor) -> bool:
        """Whether the labelled rows hold a positive pair (two rows of one class)."""
        return labels.numel() >= 2 and bool(torch.unique(labels, return_counts=True)[1].max() >= 2)

    def _check_class_range(self, labels: Tensor, num_classes: int) -> None:
        if labels.numel() and labels.max() >= num_classes:
            raise ValueError(f'{type(self).__name__}: labels must be < num_classes={num_classes} (or -1), '
                             f'got {int(labels.max())}')

    def _loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


@MODELS.register_module()
class BatchHardTripletLoss(_MetricLoss):
    """Triplet loss with batch-hard mining (Hermans et al. 2017; Eq. (1) of Yu et al. with their reference code's
    mining): pml's ``TripletMarginLoss`` on the triplets of pml's ``BatchHardMiner``.

    Each labelled row with at least one positive and one negative in the batch is an anchor, with its hardest
    (farthest) positive and hardest (nearest) negative; its loss is relu(d_ap - d_an + margin).

    Args:
        margin: the triplet margin (default 0, the reference code of Yu et al.).
        normalize_embeddings: L2-normalise the embeddings before taking distances. Default False (pml's default
            is True): the loss acts on the embeddings as the model gives them, as in Yu et al., whose triplet
            loss is on the raw 512-d embedding; a model that normalises its output needs no second normalisation.
        squared: use squared Euclidean distances (default False: plain Euclidean, pml's default).
        reduction: ``'nonzero_mean'`` (default, pml's ``AvgNonZeroReducer``): the mean over the anchors whose
            loss is > 0, 0 when none is; ``'mean'`` (pml's ``MeanReducer``): the mean over all anchors.
        loss_weight: factor of the loss.
    """

    def __init__(self,
                 margin: float = 0.0,
                 normalize_embeddings: bool = False,
                 squared: bool = False,
                 reduction: str = 'nonzero_mean',
                 loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if not _is_number(margin) or not margin >= 0:
            self._invalid('margin', 'a number >= 0', margin)
        if not isinstance(normalize_embeddings, bool):
            self._invalid('normalize_embeddings', 'a bool', normalize_embeddings)
        if not isinstance(squared, bool):
            self._invalid('squared', 'a bool', squared)
        if reduction not in TRIPLET_REDUCTIONS:
            self._invalid('reduction', f'one of {TRIPLET_REDUCTIONS}', reduction)
        self.margin = margin
        self.normalize_embeddings = normalize_embeddings
        self.squared = squared
        self.reduction = reduction
        power = 2 if squared else 1
        self.miner = pml_miners.BatchHardMiner(
            distance=LpDistance(normalize_embeddings=normalize_embeddings, p=2, power=power))
        reducer = AvgNonZeroReducer() if reduction == 'nonzero_mean' else MeanReducer()
        self.loss = pml_losses.TripletMarginLoss(
            margin=margin,
            distance=LpDistance(normalize_embeddings=normalize_embeddings, p=2, power=power),
            reducer=reducer)

    def _loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.loss(embeddings, labels, self.miner(embeddings, labels))


@MODELS.register_module()
class MarginLoss(_MetricLoss):
    """Margin loss with distance-weighted sampling (Wu et al. 2017), the base criterion of S2SD: pml's
    ``MarginLoss`` on the triplets of pml's ``DistanceWeightedMiner``.

    Embeddings are L2-normalised by pml (the miner's weights assume points on the unit sphere). The sampling draws
    from torch's global random generator.

    Args:
        margin: alpha of the margin loss (0.2).
        beta: initial boundary between positive and negative distances (1.2).
        learn_beta: make beta a parameter (S2SD trains it with lr 5e-4). It is ``loss.beta`` of this module
            (``loss_module.loss.beta`` of an ``ImageEmbedder``); mmengine matches custom keys as substrings of the
            full parameter name, so ``paramwise_cfg=dict(custom_keys={'loss.beta': dict(lr_mult=50.0)})`` gives
            it 5e-4 beside a base lr of 1e-5.
        num_classes: number of training classes, for one beta per class (labels must then be < num_classes);
            None: one beta shared by all classes.
        nu: weight of the beta regulariser nu * beta (0).
        cutoff: the miner's lower clamp of the distances (0.5).
        nonzero_loss_cutoff: the miner samples only negatives closer than this (1.4).
        loss_weight: factor of the loss.
    """

    def __init__(self,
                 margin: float = 0.2,
                 beta: float = 1.2,
                 learn_beta: bool = True,
                 num_classes: Optional[int] = None,
                 nu: float = 0.0,
                 cutoff: float = 0.5,
                 nonzero_loss_cutoff: float = 1.4,
                 loss_weight: float = 1.0):
        super().__init__(loss_weight)
        for name, value in dict(margin=margin, beta=beta, nu=nu, cutoff=cutoff).items():
            if not _is_number(value) or not value >= 0:
                self._invalid(name, 'a number >= 0', value)
        if not _is_number(nonzero_loss_cutoff) or not nonzero_loss_cutoff > cutoff:
            self._invalid('nonzero_loss_cutoff', f'a number > cutoff ({cutoff})', nonzero_loss_cutoff)
        if not isinstance(learn_beta, bool):
            self._invalid('learn_beta', 'a bool', learn_beta)
        if num_classes is not None and not _is_count(num_classes):
            self._invalid('num_classes', 'None or an integer >= 1', num_classes)
        self.num_classes = num_classes
        self.miner = pml_miners.DistanceWeightedMiner(cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff)
        self.loss = pml_losses.MarginLoss(
            margin=margin, nu=nu, beta=beta, learn_beta=learn_beta, num_classes=num_classes)

    def _check(self, embeddings: Tensor, labels: Tensor) -> None:
        super()._check(embeddings, labels)
        if self.num_classes is not None:
            self._check_class_range(labels, self.num_classes)

    def _loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.loss(embeddings, labels, self.miner(embeddings, labels))


@MODELS.register_module()
class MultiSimilarityLoss(_MetricLoss):
    """Multi-similarity loss (Wang et al. 2019) on the pairs of its miner: pml's ``MultiSimilarityLoss`` and
    ``MultiSimilarityMiner`` (cosine similarity, so embeddings are L2-normalised by pml). Defaults of S2SD.

    Args:
        alpha: weight of the positive pairs (2).
        beta: weight of the negative pairs (40).
        base: the similarity offset lambda (0.5).
        epsilon: the miner keeps negatives more similar than the least similar positive minus epsilon, and
            positives less similar than the most similar negative plus epsilon (0.1).
        loss_weight: factor of the loss.
    """

    def __init__(self,
                 alpha: float = 2.0,
                 beta: float = 40.0,
                 base: float = 0.5,
                 epsilon: float = 0.1,
                 loss_weight: float = 1.0):
        super().__init__(loss_weight)
        for name, value in dict(alpha=alpha, beta=beta).items():
            if not _is_number(value) or not value > 0:
                self._invalid(name, 'a number > 0', value)
        for name, value in dict(base=base, epsilon=epsilon).items():
            if not _is_number(value):
                self._invalid(name, 'a number', value)
        self.miner = pml_miners.MultiSimilarityMiner(epsilon=epsilon)
        self.loss = pml_losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)

    def _loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.loss(embeddings, labels, self.miner(embeddings, labels))


@MODELS.register_module()
class ProxyAnchorLoss(_MetricLoss):
    """Proxy-Anchor loss (Kim et al. 2020): pml's ``ProxyAnchorLoss`` (cosine similarity to one learnable proxy
    per class). Unlike the pair losses it needs no positive pair: one labelled row gives a loss.

    The proxies (num_classes, embedding_size) are ``loss.proxies`` of this module, float32
    (``loss_module.loss.proxies`` of an ``ImageEmbedder``); mmengine matches custom keys as substrings of the full
    parameter name, so the usual 100x lr is ``paramwise_cfg=dict(custom_keys={'loss.proxies': dict(lr_mult=100.0)})``.

    Args:
        num_classes: number of training classes (labels must be < num_classes).
        embedding_size: D of the embeddings.
        margin: delta of the loss (0.1).
        alpha: scale of the loss (32).
        loss_weight: factor of the loss.
    """

    def __init__(self,
                 num_classes: int,
                 embedding_size: int,
                 margin: float = 0.1,
                 alpha: float = 32.0,
                 loss_weight: float = 1.0):
        super().__init__(loss_weight)
        if not _is_count(num_classes):
            self._invalid('num_classes', 'an integer >= 1', num_classes)
        if not _is_count(embedding_size):
            self._invalid('embedding_size', 'an integer >= 1', embedding_size)
        if not _is_number(margin):
            self._invalid('margin', 'a number', margin)
        if not _is_number(alpha) or not alpha > 0:
            self._invalid('alpha', 'a number > 0', alpha)
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.loss = pml_losses.ProxyAnchorLoss(num_classes, embedding_size, margin=margin, alpha=alpha)

    def _can_learn_from(self, labels: Tensor) -> bool:
        return labels.numel() >= 1

    def _check(self, embeddings: Tensor, labels: Tensor) -> None:
        super()._check(embeddings, labels)
        if embeddings.shape[1] != self.embedding_size:
            raise ValueError(f'{type(self).__name__}: embeddings {tuple(embeddings.shape)} must have '
                             f'embedding_size={self.embedding_size} columns')
        self._check_class_range(labels, self.num_classes)

    def _loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.loss(embeddings, labels)


def switch_negatives(anchors: Tensor, negatives: Tensor, labels: Tensor, p_switch: float) -> Tensor:
    """The negatives of triplets, each replaced with probability ``p_switch`` by a random positive of its anchor
    (another row of the anchor's class, drawn uniformly): the regularisation of Roth et al., "Revisiting Training
    Strategies and Generalization Performance in Deep Metric Learning" (ICML 2020). Draws from torch's global
    random generator.

    Args:
        anchors: (T, ) row indices of the triplets' anchors.
        negatives: (T, ) row indices of their negatives.
        labels: (B, ) labels of the rows.
        p_switch: probability of a switch, in [0, 1].

    Returns:
        Tensor: (T, ) new negative indices (a new tensor; a triplet whose anchor has no other row of its class keeps
        its negative).
    """
    if anchors.numel() == 0 or p_switch == 0:
        return negatives.clone()
    same = labels[anchors].unsqueeze(1) == labels.unsqueeze(0)
    same[torch.arange(len(anchors), device=anchors.device), anchors] = False
    switch = (torch.rand(len(anchors), device=anchors.device) < p_switch) & same.any(dim=1)
    switched = negatives.clone()
    if bool(switch.any()):
        switched[switch] = torch.multinomial(same[switch].float(), 1).squeeze(1)
    return switched


@MODELS.register_module()
class RegularizedMarginLoss(MarginLoss):
    """Regularized margin loss (Roth et al., "Revisiting Training Strategies and Generalization Performance in Deep
    Metric Learning", ICML 2020), a base criterion of S2SD: :class:`MarginLoss` whose distance-weighted triplets
    have, with probability ``p_switch``, their negative replaced by a positive of the anchor, which the loss then
    pushes beyond the margin like a negative. Pulling some same-class pairs apart keeps more directions of
    significant variance in the embedding space.

    Args:
        p_switch: probability of the switch per triplet. S2SD with ResNet backbones: 0.4 on CUB200-2011, 0.35 on
            CARS196, 0.15 on SOP.
        **kwargs: the arguments of :class:`MarginLoss`.
    """

    def __init__(self, p_switch: float = 0.4, **kwargs):
        super().__init__(**kwargs)
        if not _is_number(p_switch) or not 0 <= p_switch <= 1:
            self._invalid('p_switch', 'a probability in [0, 1]', p_switch)
        self.p_switch = float(p_switch)

    def _loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        anchors, positives, negatives = self.miner(embeddings, labels)
        negatives = switch_negatives(anchors, negatives, labels, self.p_switch)
        return self.loss(embeddings, labels, (anchors, positives, negatives))
