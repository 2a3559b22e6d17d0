"""SSIM and MS-SSIM as pure functions, and their losses for feature distillation.

SSIM (Wang et al. 2004, Eq. 12-15) between maps x and y of shape (N, C, H, W), per channel, with a
Gaussian window (11 x 11, sigma 1.5, 'valid' filtering), K1 = 0.01, K2 = 0.03, C1 = (K1 L)^2,
C2 = (K2 L)^2, C3 = C2 / 2:

    l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)        luminance
    c = (2 sigma_x sigma_y + C2) / (sigma_x^2 + sigma_y^2 + C2)   contrast
    s = (sigma_xy + C3) / (sigma_x sigma_y + C3)            structure
    SSIM = mean over pixels of l * c * s

With C3 = C2 / 2 the product c * s is (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2), which is what
is computed when contrast and structure are both on (it needs no square root).

Maps smaller than the window (P6/P7 of small images): the window is shrunk, per dimension, to the
largest odd size that fits, and its sigma is scaled by the same factor, so the statistics stay local
and 'valid' filtering still yields at least one value; a 1-pixel dimension is left unfiltered.
With maps at least as large as the window the result equals pytorch-msssim.

MS-SSIM (Wang et al. 2003): contrast-structure at the first levels and the full SSIM at the last,
combined as prod_j cs_j^w_j * ssim_M^w_M, maps halved by 2x2 average pooling between levels.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmkd.registry import SHARED_MODELS

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
COMPONENTS = ('luminance', 'contrast', 'structure')


def _window(length: int, win_size: int, win_sigma: float) -> Tuple[int, float]:
    """Window size and sigma along a dimension of ``length`` pixels (shrunk when it does not fit)."""
    if length >= win_size:
        return win_size, win_sigma
    size = length if length % 2 else length - 1
    return size, win_sigma * size / win_size


def _gaussian(size: int, sigma: float, like: Tensor) -> Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - size // 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    return g / g.sum()


def _blur(x: Tensor, win_size: int, win_sigma: float) -> Tensor:
    """Separable Gaussian 'valid' filtering of every channel of ``x`` (N, C, H, W)."""
    channels = x.shape[1]
    for dim in (2, 3):
        size, sigma = _window(x.shape[dim], win_size, win_sigma)
        if size <= 1:
            continue
        kernel = _gaussian(size, sigma, x)
        shape = (1, 1, size, 1) if dim == 2 else (1, 1, 1, size)
        x = F.conv2d(x, kernel.view(shape).expand(channels, -1, -1, -1), groups=channels)
    return x


def _ssim_maps(x: Tensor, y: Tensor, data_range: float, win_size: int, win_sigma: float,
               K: Tuple[float, float], components: Sequence[str]) -> Tuple[Tensor, Tensor]:
    """Per-pixel luminance map and contrast * structure map (each (N, C, H', W'))."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f'ssim expects two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} '
                         f'and {tuple(y.shape)}')
    unknown = set(components) - set(COMPONENTS)
    if unknown or not components:
        raise ValueError(f'components must be a non-empty subset of {COMPONENTS}, got {tuple(components)}')
    c1 = (K[0] * data_range)**2
    c2 = (K[1] * data_range)**2
    n, c = x.shape[:2]
    # one depthwise filtering pass over the five statistics instead of five passes
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), win_size, win_sigma)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy

    luminance = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) if 'luminance' in components else None
    if 'contrast' in components and 'structure' in components:
        cs = (2 * cov + c2) / (var_x + var_y + c2)
    else:
        # separate terms need sigma_x sigma_y; a tiny floor keeps the square root differentiable
        sd_x = var_x.clamp_min(0).add(1e-12).sqrt()
        sd_y = var_y.clamp_min(0).add(1e-12).sqrt()
        cs = torch.ones_like(cov)
        if 'contrast' in components:
            cs = cs * (2 * sd_x * sd_y + c2) / (var_x + var_y + c2)
        if 'structure' in components:
            cs = cs * (cov + c2 / 2) / (sd_x * sd_y + c2 / 2)
    if luminance is None:
        luminance = torch.ones_like(cs)
    return luminance, cs


def ssim(x: Tensor,
         y: Tensor,
         data_range: float = 255.0,
         win_size: int = 11,
         win_sigma: float = 1.5,
         K: Tuple[float, float] = (0.01, 0.03),
         components: Sequence[str] = COMPONENTS,
         reduction: str = 'image') -> Tensor:
    """Structural similarity of ``x`` and ``y`` (N, C, H, W).

    Args:
        data_range: value range L of the inputs (255 for 8-bit images, 1 for maps in [0, 1]).
        win_size, win_sigma: Gaussian window (odd size); shrunk for maps smaller than it.
        K: (K1, K2) stabilisers.
        components: which of luminance, contrast and structure to multiply (the ablation of the
            SSIM-KD paper); all three is standard SSIM.
        reduction: ``'image'`` -> (N,) mean over channels and pixels (pytorch-msssim's
            ``size_average=False``); ``'channel'`` -> (N, C); ``'mean'`` -> scalar.
    """
    if win_size % 2 != 1:
        raise ValueError(f'win_size must be odd, got {win_size}')
    luminance, cs = _ssim_maps(x, y, data_range, win_size, win_sigma, K, components)
    per_channel = (luminance * cs).flatten(2).mean(-1)
    return _reduce(per_channel, reduction)


def _reduce(per_channel: Tensor, reduction: str) -> Tensor:
    if reduction == 'channel':
        return per_channel
    if reduction == 'image':
        return per_channel.mean(1)
    if reduction == 'mean':
        return per_channel.mean()
    raise ValueError(f"reduction must be 'image', 'channel' or 'mean', got {reduction!r}")


def ms_ssim(x: Tensor,
            y: Tensor,
            data_range: float = 255.0,
            win_size: int = 11,
            win_sigma: float = 1.5,
            K: Tuple[float, float] = (0.01, 0.03),
            weights: Optional[Sequence[float]] = None,
            reduction: str = 'image',
            eps: float = 0.0) -> Tensor:
    """Multi-scale SSIM of ``x`` and ``y`` (N, C, H, W); arguments as :func:`ssim`.

    Args:
        weights: per-level exponents, default the five of Wang et al. 2003.
        eps: floor of each level's value before the power; 0 reproduces pytorch-msssim (whose
            gradient is infinite where a level's value is 0); losses use a small positive value.
    """
    weights = x.new_tensor(MS_SSIM_WEIGHTS if weights is None else weights)
    values = []
    for level in range(len(weights)):
        luminance, cs = _ssim_maps(x, y, data_range, win_size, win_sigma, K, COMPONENTS)
        if level == len(weights) - 1:
            values.append((luminance * cs).flatten(2).mean(-1))
        else:
            values.append(cs.flatten(2).mean(-1))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    stacked = torch.stack(values).relu()
    if eps > 0:
        stacked = stacked.clamp_min(eps)
    per_channel = torch.prod(stacked**weights.view(-1, 1, 1), dim=0)
    return _reduce(per_channel, reduction)


def minmax_normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Scale each channel of each map to [0, 1] (a constant channel becomes 0)."""
    flat = x.flatten(2)
    low = flat.min(-1, keepdim=True)[0]
    high = flat.max(-1, keepdim=True)[0]
    return ((flat - low) / (high - low + eps)).view_as(x)


class _StructuralLoss(torch.nn.Module):
    """Shared options of the SSIM-type losses: input normalisation, data range and loss weight."""

    def __init__(self, loss_weight: float, normalize: Optional[str], data_range: float, win_size: int,
                 win_sigma: float, K: Tuple[float, float]):
        super().__init__()
        if normalize not in (None, 'minmax'):
            raise ValueError(f"normalize must be None or 'minmax', got {normalize!r}")
        self.loss_weight = loss_weight
        self.normalize = normalize
        self.data_range = data_range
        self.win_size = win_size
        self.win_sigma = win_sigma
        self.K = tuple(K)

    def _prepare(self, pred: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
        if pred.shape != target.shape:
            raise ValueError(f'{type(self).__name__}: pred {tuple(pred.shape)} and target '
                             f'{tuple(target.shape)} must have one shape')
        pred, target = pred.float(), target.float()  # statistics of squares overflow in fp16
        if self.normalize == 'minmax':
            pred, target = minmax_normalize(pred), minmax_normalize(target)
        return pred, target


@SHARED_MODELS.register_module()
class SSIMLoss(_StructuralLoss):
    """``loss_weight * (1 - SSIM(pred, target))``, SSIM per channel, averaged (SSIM-KD, Eq. 5).

    Args:
        loss_weight: lambda of the paper (2..4 works best for RetinaNet necks).
        normalize: ``'minmax'`` scales every channel of both maps to [0, 1] first; ``None`` uses
            them as they are (then set ``data_range`` to their range).
        data_range: L in C1 = (K1 L)^2, C2 = (K2 L)^2.
        components: subset of ('luminance', 'contrast', 'structure') for the paper's ablation.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 normalize: Optional[str] = 'minmax',
                 data_range: float = 1.0,
                 win_size: int = 11,
                 win_sigma: float = 1.5,
                 K: Tuple[float, float] = (0.01, 0.03),
                 components: Sequence[str] = COMPONENTS):
        super().__init__(loss_weight, normalize, data_range, win_size, win_sigma, K)
        self.components = tuple(components)
        if set(self.components) - set(COMPONENTS) or not self.components:
            raise ValueError(f'components must be a non-empty subset of {COMPONENTS}, got {components}')

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        pred, target = self._prepare(pred, target)
        value = ssim(pred, target, self.data_range, self.win_size, self.win_sigma, self.K, self.components,
                     reduction='mean')
        return self.loss_weight * (1 - value)


@SHARED_MODELS.register_module()
class MSSSIMLoss(_StructuralLoss):
    """``loss_weight * (1 - MS-SSIM(pred, target))`` (SSIM-KD appendix, Table 1).

    Levels whose map would fall below one pixel are still computed, with the shrunk window of
    :func:`ssim`. Each level's value is floored at ``eps`` so that gradients stay finite.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 normalize: Optional[str] = 'minmax',
                 data_range: float = 1.0,
                 win_size: int = 11,
                 win_sigma: float = 1.5,
                 K: Tuple[float, float] = (0.01, 0.03),
                 weights: Optional[Sequence[float]] = None,
                 eps: float = 1e-6):
        super().__init__(loss_weight, normalize, data_range, win_size, win_sigma, K)
        self.weights = tuple(MS_SSIM_WEIGHTS if weights is None else weights)
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        pred, target = self._prepare(pred, target)
        value = ms_ssim(pred, target, self.data_range, self.win_size, self.win_sigma, self.K, self.weights,
                        reduction='mean', eps=self.eps)
        return self.loss_weight * (1 - value)


@SHARED_MODELS.register_module()
class L1MSSSIMLoss(MSSSIMLoss):
    """``loss_weight * (alpha * l1 + (1 - alpha) * (1 - MS-SSIM))`` with alpha = 0.15 (Zhao et al. 2017,
    the l1 + MS-SSIM row of the SSIM-KD appendix, Table 1). The l1 term is taken on the same
    (normalised) maps as MS-SSIM."""

    def __init__(self, alpha: float = 0.15, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= alpha <= 1:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        self.alpha = alpha

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        pred, target = self._prepare(pred, target)
        value = ms_ssim(pred, target, self.data_range, self.win_size, self.win_sigma, self.K, self.weights,
                        reduction='mean', eps=self.eps)
        l1 = (pred - target).abs().mean() / self.data_range
        return self.loss_weight * (self.alpha * l1 + (1 - self.alpha) * (1 - value))

