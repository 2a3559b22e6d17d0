"""The SSIM-type feature-distillation losses (SSIM-KD, de Rijk et al. 2022) and their input normalisation.

The math is in :mod:`.ssim`; these wrappers add the normalisation of the maps, the loss weight, and the
mixed-precision contract: whatever the autocast state and the input dtype, the statistics are computed in
float32 with autocast disabled and the loss is float32.
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmkd.registry import SHARED_MODELS
from .ssim import COMPONENTS, MS_SSIM_WEIGHTS, MULTISCALE_MODES, _autocast_disabled, _check_components, ms_ssim, ssim


def minmax_normalize(x: Tensor, eps: float = 1e-6, rel_eps: float = 1e-2, flat_eps: float = 1e-5) -> Tensor:
    """Scale each channel of each map (N, C, H, W) to [0, 1], with a bounded gradient.

    A channel is divided by its range (max - min), but by no less than ``rel_eps`` times the widest
    range among the channels of the same map (plus ``eps``): the gradient of a nearly constant channel
    would otherwise grow as 1 / range (issue reports: 1e4-1e7 on FPN channels, 0.03 typical); now its
    scale factor is at most 1 / rel_eps times the widest channel's, whatever its range. Channels whose
    range is at least ``rel_eps`` of the widest still span [0, 1]; a nearly constant one spans less, and a
    constant one becomes 0.

    A map whose widest channel range is at most ``flat_eps`` times its largest magnitude (plus ``eps``)
    is flat: constant in every channel (bfloat16 autocast rounds a map of 1e4 + small noise to a
    constant), or varying only by float32 rounding (the default 1e-5 is about 100 float32 rounding steps).
    It carries no structure to distil and its divisor would fall to ``eps`` or to its rounding noise
    (input gradients of 1e4-3e7 were measured), so it is normalised by the same formula but passes no
    gradient. Other maps keep their gradient, which is at most about 1 / (``flat_eps`` max|x|) times the
    gradient with respect to the normalised map.

    Args:
        x: maps (N, C, H, W).
        eps: absolute floor of the divisor (a map whose channels are all constant).
        rel_eps: floor of the divisor relative to the widest channel of the map.
        flat_eps: a map whose widest range is at most this fraction of its largest magnitude (plus
            ``eps``) passes no gradient.

    Returns:
        Tensor: the normalised maps, shape of ``x``.
    """
    flat = x.flatten(2)
    low = flat.min(-1, keepdim=True)[0]
    span = flat.max(-1, keepdim=True)[0] - low
    widest = span.amax(1, keepdim=True)
    out = (flat - low) / (torch.maximum(span, rel_eps * widest) + eps)
    is_flat = widest <= flat_eps * flat.detach().abs().amax((1, 2), keepdim=True) + eps
    return torch.where(is_flat, out.detach(), out).view_as(x)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _StructuralLoss(torch.nn.Module):
    """Shared options and forward of the SSIM-type losses: input normalisation, data range, window,
    constants, loss weight; subclasses define :meth:`_loss` on the prepared maps.

    The loss contract for mixed precision: whatever the autocast state and the input dtype, the maps
    are cast to float32 and every statistic is computed with autocast disabled; the loss is float32.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 normalize: Optional[str] = 'minmax',
                 data_range: float = 1.0,
                 win_size: int = 11,
                 win_sigma: float = 1.5,
                 K: Tuple[float, float] = (0.01, 0.03),
                 minmax_rel_eps: float = 1e-2,
                 minmax_flat_eps: float = 1e-5,
                 **unexpected):
        super().__init__()
        # the subclasses pass their options on as **kwargs: a misspelt one arrives here and is reported
        # under the class the config named
        if unexpected:
            raise TypeError(f'{type(self).__name__}.__init__() got unexpected keyword argument(s) '
                            f'{sorted(unexpected)}')
        if normalize not in (None, 'minmax'):
            self._invalid('normalize', "None or 'minmax'", normalize)
        if not isinstance(win_size, int) or isinstance(win_size, bool) or win_size < 1 or win_size % 2 != 1:
            self._invalid('win_size', 'an odd integer >= 1', win_size)
        positive = dict(data_range=data_range, win_sigma=win_sigma)
        non_negative = dict(loss_weight=loss_weight, minmax_rel_eps=minmax_rel_eps, minmax_flat_eps=minmax_flat_eps)
        for name, value in positive.items():
            if not _is_number(value) or not value > 0:
                self._invalid(name, 'a number > 0', value)
        for name, value in non_negative.items():
            if not _is_number(value) or not value >= 0:
                self._invalid(name, 'a number >= 0', value)
        if not isinstance(K, (tuple, list)) or len(K) != 2 or not all(_is_number(k) and k > 0 for k in K):
            self._invalid('K', 'two numbers > 0 (K1, K2)', K)
        self.loss_weight = loss_weight
        self.normalize = normalize
        self.data_range = data_range
        self.win_size = win_size
        self.win_sigma = win_sigma
        self.K = tuple(K)
        self.minmax_rel_eps = minmax_rel_eps
        self.minmax_flat_eps = minmax_flat_eps

    def _invalid(self, name: str, expected: str, value) -> None:
        raise ValueError(f'{type(self).__name__}: {name} must be {expected}, got {value!r}')

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Loss between student maps ``pred`` and teacher maps ``target`` (N, C, H, W); a scalar."""
        if pred.shape != target.shape:
            raise ValueError(f'{type(self).__name__}: pred {tuple(pred.shape)} and target '
                             f'{tuple(target.shape)} must have one shape')
        with _autocast_disabled(pred.device.type):
            pred, target = pred.float(), target.float()
            if self.normalize == 'minmax':
                pred = minmax_normalize(pred, rel_eps=self.minmax_rel_eps, flat_eps=self.minmax_flat_eps)
                target = minmax_normalize(target, rel_eps=self.minmax_rel_eps, flat_eps=self.minmax_flat_eps)
            return self.loss_weight * self._loss(pred, target)

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError


@SHARED_MODELS.register_module()
class SSIMLoss(_StructuralLoss):
    """``loss_weight * (1 - SSIM(pred, target))``, SSIM per channel, averaged (SSIM-KD, Eq. 5).

    Args:
        loss_weight: lambda of the paper (2..4 works best for RetinaNet necks).
        normalize: ``'minmax'`` (mmkd's default; the paper does not say how it scales the maps) scales
            every channel of both maps to [0, 1] first (:func:`minmax_normalize`); ``None`` uses them
            as they are (then set ``data_range`` to their range).
        data_range: L in C1 = (K1 L)^2, C2 = (K2 L)^2.
        win_size, win_sigma, K: as :func:`ssim`.
        minmax_rel_eps, minmax_flat_eps: ``rel_eps`` and ``flat_eps`` of :func:`minmax_normalize`.
        components: subset of ('luminance', 'contrast', 'structure') for the paper's ablation.
    """

    def __init__(self, components: Sequence[str] = COMPONENTS, **kwargs):
        super().__init__(**kwargs)
        try:
            self.components = _check_components(components)
        except (TypeError, ValueError):
            self._invalid('components', f'a non-empty subset of {COMPONENTS}', components)

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        value = ssim(
            pred, target, self.data_range, self.win_size, self.win_sigma, self.K, self.components, reduction='mean')
        return 1 - value


@SHARED_MODELS.register_module()
class MSSSIMLoss(_StructuralLoss):
    """``loss_weight * (1 - MS-SSIM(pred, target))`` (SSIM-KD appendix, Table 1).

    Args:
        weights: per-level exponents (default: Wang et al.'s five).
        eps: floor of each level's value, so that gradients stay finite.
        multiscale: ``'downsample'`` (default: Wang et al.'s MS-SSIM, which the appendix cites) or
            ``'window'`` (the appendix's wording: growing windows on the same map); see :func:`ms_ssim`.
        **kwargs: the options of :class:`SSIMLoss` except ``components``.

    Levels whose map would fall below one pixel are still computed, with the shrunk window of
    :func:`ssim`.
    """

    def __init__(self,
                 weights: Optional[Sequence[float]] = None,
                 eps: float = 1e-6,
                 multiscale: str = 'downsample',
                 **kwargs):
        super().__init__(**kwargs)
        if multiscale not in MULTISCALE_MODES:
            self._invalid('multiscale', f'one of {MULTISCALE_MODES}', multiscale)
        if weights is not None and (not isinstance(weights, (tuple, list)) or not weights
                                    or not all(_is_number(w) and w >= 0 for w in weights)):
            self._invalid('weights', 'a non-empty sequence of numbers >= 0', weights)
        if not _is_number(eps) or not 0 <= eps < 1:
            self._invalid('eps', 'a number in [0, 1)', eps)
        self.weights = tuple(MS_SSIM_WEIGHTS if weights is None else weights)
        self.eps = eps
        self.multiscale = multiscale

    def _ms_ssim(self, pred: Tensor, target: Tensor) -> Tensor:
        return ms_ssim(
            pred,
            target,
            self.data_range,
            self.win_size,
            self.win_sigma,
            self.K,
            self.weights,
            reduction='mean',
            eps=self.eps,
            multiscale=self.multiscale)

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return 1 - self._ms_ssim(pred, target)


@SHARED_MODELS.register_module()
class L1MSSSIMLoss(MSSSIMLoss):
    """``loss_weight * (alpha * l1 + (1 - alpha) * (1 - MS-SSIM))`` with alpha = 0.15 (Zhao et al. 2017,
    the l1 + MS-SSIM row of the SSIM-KD appendix, Table 1). The l1 term is taken on the same
    (normalised) maps as MS-SSIM, divided by ``data_range``; other arguments as :class:`MSSSIMLoss`."""

    def __init__(self, alpha: float = 0.15, **kwargs):
        super().__init__(**kwargs)
        if not _is_number(alpha) or not 0 <= alpha <= 1:
            self._invalid('alpha', 'a number in [0, 1]', alpha)
        self.alpha = alpha

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        l1 = (pred - target).abs().mean() / self.data_range
        return self.alpha * l1 + (1 - self.alpha) * (1 - self._ms_ssim(pred, target))
