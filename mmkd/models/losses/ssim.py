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

Implementation: full SSIM and the contrast-structure term go through ``_SSIMFunction``, whose
hand-written backward keeps only the inputs (see ``bench/README.md`` for time and memory against
pytorch-msssim and kornia); the component ablations go through plain autograd (``_ssim_maps``).
"""
from typing import Dict, List, Optional, Sequence, Tuple

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


def _kernels(shape: torch.Size, win_size: int, win_sigma: float, like: Tensor) -> List[Tuple[int, Tensor]]:
    """The 1-D Gaussian of each spatial dimension of a map of ``shape`` (skipped where it is 1 wide)."""
    kernels = []
    for dim in (2, 3):
        size, sigma = _window(shape[dim], win_size, win_sigma)
        if size > 1:
            kernels.append((dim, _gaussian(size, sigma, like)))
    return kernels


def _kernel_view(dim: int, kernel: Tensor, channels: int) -> Tensor:
    shape = (1, 1, kernel.numel(), 1) if dim == 2 else (1, 1, 1, kernel.numel())
    return kernel.view(shape).expand(channels, -1, -1, -1)


# On the CPU a 'valid' 1-D filtering along a short dimension is faster as products with a banded
# matrix B (B[j + i, j] = kernel[i]) than as a depthwise convolution: along H one batched product
# (H' x H) @ (H x W) per map; along W tiles of _TILE output columns, each a GEMM with the
# (_TILE + k - 1) x _TILE block of B, so that few of the multiplied entries are zeros. Longer
# dimensions (and other devices) use the convolution.
_MATMUL_MAX_LENGTH = 256
_TILE = 32
_BANDS: Dict[tuple, Tensor] = {}


def _band(length: int, kernel: Tensor) -> Tensor:
    """(length, length - k + 1) matrix B with (v @ B)[j] = sum_i kernel[i] v[j + i]."""
    key = (length, tuple(kernel.tolist()), kernel.dtype, kernel.device)
    band = _BANDS.get(key)
    if band is None:
        size = kernel.numel()
        out = length - size + 1
        band = kernel.new_zeros(length, out)
        cols = torch.arange(out, device=kernel.device)
        for i in range(size):
            band[cols + i, cols] = kernel[i]
        if len(_BANDS) > 64:
            _BANDS.clear()
        _BANDS[key] = band
    return band


def _use_matmul(x: Tensor, length: int) -> bool:
    return x.device.type == 'cpu' and length <= _MATMUL_MAX_LENGTH


def _rows_times(x: Tensor, band: Tensor, adjoint: bool) -> Tensor:
    """``x`` (N, C, H, L) times ``band`` (or its transpose) along the last dimension, by column tiles."""
    length_in = x.shape[-1]
    length_out = band.shape[0] if adjoint else band.shape[1]
    reach = band.shape[0] - band.shape[1]  # k - 1
    rows = x.reshape(-1, length_in)
    if torch.is_grad_enabled() and (x.requires_grad or band.requires_grad):
        # autograd path (the components ablation): plain products, no out= buffers
        return (rows @ (band.t() if adjoint else band)).view(*x.shape[:-1], length_out)
    out = x.new_empty(rows.shape[0], length_out)
    for a in range(0, length_out, _TILE):
        b = min(a + _TILE, length_out)
        if adjoint:  # output column c takes input columns c - k + 1 .. c
            lo, hi = max(0, a - reach), min(length_in, b)
            torch.mm(rows[:, lo:hi], band[a:b, lo:hi].t(), out=out[:, a:b])
        else:  # output column j takes input columns j .. j + k - 1
            torch.mm(rows[:, a:b + reach], band[a:b + reach, a:b], out=out[:, a:b])
    return out.view(*x.shape[:-1], length_out)


def _filter(x: Tensor, dim: int, kernel: Tensor) -> Tensor:
    """'valid' filtering of ``x`` (N, C, H, W) along ``dim`` (2 or 3)."""
    if _use_matmul(x, x.shape[dim]):
        band = _band(x.shape[dim], kernel)
        return _rows_times(x, band, adjoint=False) if dim == 3 else band.t() @ x
    return F.conv2d(x, _kernel_view(dim, kernel, x.shape[1]), groups=x.shape[1])


def _filter_adjoint(g: Tensor, dim: int, kernel: Tensor) -> Tensor:
    """Adjoint of :func:`_filter`: spreads ``g`` back onto the input grid (a 'full' filtering)."""
    length = g.shape[dim] + kernel.numel() - 1
    if _use_matmul(g, length):
        band = _band(length, kernel)
        return _rows_times(g, band, adjoint=True) if dim == 3 else band @ g
    return F.conv_transpose2d(g, _kernel_view(dim, kernel, g.shape[1]), groups=g.shape[1])


def _blur(x: Tensor, kernels: List[Tuple[int, Tensor]]) -> Tensor:
    """Separable Gaussian 'valid' filtering of every channel of ``x`` (N, C, H, W)."""
    for dim, kernel in kernels:
        x = _filter(x, dim, kernel)
    return x


def _blur_transposed(g: Tensor, kernels: List[Tuple[int, Tensor]]) -> Tensor:
    """Adjoint of the 'valid' blur."""
    for dim, kernel in reversed(kernels):
        g = _filter_adjoint(g, dim, kernel)
    return g


# The statistics are computed a group of channels at a time: on the CPU a few, so that every
# intermediate map stays in cache (and is recycled by the allocator instead of page-faulted in
# afresh); on a GPU larger groups, which bound the transient memory (the whole tensor at once would
# peak above pytorch-msssim) at the cost of a few more kernel launches. Elements per statistic map
# of one group:
_CHUNK_ELEMENTS = 1 << 18
_CHUNK_ELEMENTS_GPU = 1 << 22


def _channel_chunks(x: Tensor) -> List[slice]:
    channels = x.shape[1]
    budget = _CHUNK_ELEMENTS if x.device.type == 'cpu' else _CHUNK_ELEMENTS_GPU
    step = max(1, budget // max(1, x.shape[0] * x.shape[2] * x.shape[3]))
    return [slice(c, min(c + step, channels)) for c in range(0, channels, step)]


def _statistics(x: Tensor, y: Tensor, kernels: List[Tuple[int, Tensor]]) -> Tuple[Tensor, ...]:
    """Blurred x, y, x^2, y^2 and xy (each (N, C, H', W')), filtered together in one pass."""
    channels = x.shape[1]
    stats = x.new_empty(x.shape[0], 5 * channels, *x.shape[2:])
    parts = stats.split(channels, dim=1)
    parts[0].copy_(x)
    parts[1].copy_(y)
    torch.mul(x, x, out=parts[2])
    torch.mul(y, y, out=parts[3])
    torch.mul(x, y, out=parts[4])
    return _blur(stats, kernels).split(channels, dim=1)


def _ssim_terms(mu_x: Tensor, mu_y: Tensor, e_xx: Tensor, e_yy: Tensor, e_xy: Tensor, c1: float, c2: float,
                cs_only: bool) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
    """Contrast-structure CS = (2 cov + C2) / D with D = var_x + var_y + C2, 1 / D, and (unless
    ``cs_only``) luminance L = (2 mu_x mu_y + C1) / B with B = mu_x^2 + mu_y^2 + C1 and 1 / B.

    The differences are taken before the constants are added: C1, C2 are small next to E[x^2].
    """
    mu_xy = mu_x * mu_y
    sq_sum = torch.mul(mu_x, mu_x).addcmul_(mu_y, mu_y)
    inv_d = torch.add(e_xx, e_yy).sub_(sq_sum).add_(c2).reciprocal_()
    cs = torch.sub(e_xy, mu_xy).mul_(2).add_(c2).mul_(inv_d)
    if cs_only:
        return cs, inv_d, None, None
    inv_b = sq_sum.add_(c1).reciprocal_()
    lum = mu_xy.mul_(2).add_(c1).mul_(inv_b)
    return cs, inv_d, lum, inv_b


class _SSIMFunction(torch.autograd.Function):
    """Per-channel mean of the SSIM map (or of its contrast-structure map) with a hand-written backward.

    Autograd through the plain formula keeps a dozen full-size intermediates per call; this keeps
    only x and y, recomputes the five blurred statistics in the backward pass, and needs one
    transposed blur there:

        dS/dx = blur^T(dS/dmu_x) + 2 x blur^T(dS/dE[x^2]) + y blur^T(dS/dE[xy])   (and alike for y).
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, c1: float, c2: float, win_size: int, win_sigma: float,
                cs_only: bool) -> Tensor:
        kernels = _kernels(x.shape, win_size, win_sigma, x)
        out = x.new_empty(x.shape[:2])
        for chunk in _channel_chunks(x):
            cs, _, lum, _ = _ssim_terms(*_statistics(x[:, chunk], y[:, chunk], kernels), c1, c2, cs_only)
            value = cs if cs_only else cs.mul_(lum)
            out[:, chunk] = value.mean((2, 3))
        ctx.save_for_backward(x, y)
        ctx.kernels, ctx.c1, ctx.c2, ctx.cs_only = kernels, c1, c2, cs_only
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, y = ctx.saved_tensors
        c1, c2, kernels = ctx.c1, ctx.c2, ctx.kernels
        need_x, need_y = ctx.needs_input_grad[:2]
        grad_x = torch.empty_like(x) if need_x else None
        grad_y = torch.empty_like(y) if need_y else None
        for chunk in _channel_chunks(x):
            xc, yc = x[:, chunk], y[:, chunk]
            mu_x, mu_y, e_xx, e_yy, e_xy = _statistics(xc, yc, kernels)
            g = (grad[:, chunk] / (mu_x.shape[2] * mu_x.shape[3]))[..., None, None]
            cs, inv_d, lum, inv_b = _ssim_terms(mu_x, mu_y, e_xx, e_yy, e_xy, c1, c2, ctx.cs_only)
            g_l = g if lum is None else lum * g
            # the gradient maps, side by side in one buffer for one transposed blur:
            # dS/dmu (for x and/or y), dS/dE[x^2] = dS/dE[y^2] = -L CS / D, dS/dE[xy] = 2 L / D
            count = int(need_x) + int(need_y)
            maps = mu_x.new_empty(mu_x.shape[0], (count + 2) * mu_x.shape[1], *mu_x.shape[2:])
            parts = maps.split(mu_x.shape[1], dim=1)
            torch.mul(cs, inv_d, out=parts[count]).mul_(g_l).neg_()
            torch.mul(inv_d, g_l, out=parts[count + 1]).mul_(2)
            # dS/dmu_x = 2 L (mu_x CS - mu_y) / D + 2 CS (mu_y - L mu_x) / B   (second term without luminance: 0)
            index = 0
            for need, mu_a, mu_b in ((need_x, mu_x, mu_y), (need_y, mu_y, mu_x)):
                if not need:
                    continue
                g_mu = torch.mul(mu_a, cs, out=parts[index]).sub_(mu_b).mul_(inv_d).mul_(2 * g_l)
                if lum is not None:
                    g_mu.add_((mu_b - lum * mu_a).mul_(inv_b).mul_(cs).mul_(2 * g))
                index += 1
            back = _blur_transposed(maps, kernels).split(xc.shape[1], dim=1)
            t_exx, t_exy = back[count], back[count + 1]
            if need_x:
                grad_x[:, chunk] = torch.addcmul(back[0], xc, t_exx, value=2).addcmul_(yc, t_exy)
            if need_y:
                grad_y[:, chunk] = torch.addcmul(back[count - 1], yc, t_exx, value=2).addcmul_(xc, t_exy)
        return grad_x, grad_y, None, None, None, None, None


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f'ssim expects two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} '
                         f'and {tuple(y.shape)}')
    if x.dtype != y.dtype:
        raise ValueError(f'ssim expects two tensors of one dtype, got {x.dtype} and {y.dtype}')


def _ssim_maps(x: Tensor, y: Tensor, data_range: float, win_size: int, win_sigma: float,
               K: Tuple[float, float], components: Sequence[str]) -> Tuple[Tensor, Tensor]:
    """Per-pixel luminance map and contrast * structure map (each (N, C, H', W')), through autograd
    (the components ablation; full SSIM goes through :class:`_SSIMFunction`)."""
    _check_pair(x, y)
    unknown = set(components) - set(COMPONENTS)
    if unknown or not components:
        raise ValueError(f'components must be a non-empty subset of {COMPONENTS}, got {tuple(components)}')
    c1 = (K[0] * data_range)**2
    c2 = (K[1] * data_range)**2
    n, c = x.shape[:2]
    # one depthwise filtering pass over the five statistics instead of five passes
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), _kernels(x.shape, win_size, win_sigma, x))
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
    if set(components) == set(COMPONENTS):
        per_channel = _ssim_per_channel(x, y, data_range, win_size, win_sigma, K, cs_only=False)
    else:
        luminance, cs = _ssim_maps(x, y, data_range, win_size, win_sigma, K, components)
        per_channel = (luminance * cs).flatten(2).mean(-1)
    return _reduce(per_channel, reduction)


def _ssim_per_channel(x: Tensor, y: Tensor, data_range: float, win_size: int, win_sigma: float,
                      K: Tuple[float, float], cs_only: bool) -> Tensor:
    """(N, C) mean SSIM (or contrast-structure) through the fused function."""
    _check_pair(x, y)
    c1 = (K[0] * data_range)**2
    c2 = (K[1] * data_range)**2
    return _SSIMFunction.apply(x, y, c1, c2, win_size, win_sigma, cs_only)


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
        last = level == len(weights) - 1
        values.append(_ssim_per_channel(x, y, data_range, win_size, win_sigma, K, cs_only=not last))
        if not last:
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

