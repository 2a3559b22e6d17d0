"""SSIM and MS-SSIM as pure functions (the losses built on them are in :mod:`.ssim_loss`).

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

Precision: the statistics are computed in float32 (float64 inputs stay float64) with autocast disabled,
whatever the caller's autocast state: E[x^2] - E[x]^2 of half-precision values is mostly rounding. Each
channel is shifted by its mean before the moments are taken (variances and covariances do not change,
the luminance term adds the shift back), so that raw maps with a large offset keep their variances
instead of cancelling them away (without it, constant raw maps gave SSIM > 1). The variances and the
covariance are formed by one sequence of operations, so that identical maps give SSIM exactly 1, and
what rounding can still break is enforced: variances >= 0, |2 cov| <= var_x + var_y (so contrast-structure
lies in [-1, 1]), luminance >= -1. These bounds only act where the variances are rounding noise (flat
windows, windows shrunk to one pixel, data_range far below the maps' magnitude); the hand-written backward
passes no gradient through a bound that holds a value.

MS-SSIM (Wang et al. 2003): contrast-structure at the first levels and the full SSIM at the last,
combined as prod_j cs_j^w_j * ssim_M^w_M; see :func:`ms_ssim` for the two ways of forming the levels.

Implementation: full SSIM and the contrast-structure term go through ``_SSIMFunction``, whose
hand-written backward keeps only the inputs (see ``bench/README.md`` for time and memory against
pytorch-msssim and kornia); the component ablations go through plain autograd (``_ssim_maps``). The
Gaussian filtering is in :mod:`.gaussian_filter`, the registered losses in :mod:`.ssim_loss`.
"""
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .gaussian_filter import blur, blur_transposed, gaussian_kernels

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
COMPONENTS = ('luminance', 'contrast', 'structure')
MULTISCALE_MODES = ('downsample', 'window')


@contextmanager
def _autocast_disabled(device_type: str) -> Iterator[None]:
    if torch.amp.is_autocast_available(device_type):
        with torch.autocast(device_type, enabled=False):
            yield
    else:
        yield


def _full_precision(x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
    """``x`` and ``y`` in float32, or in float64 when either is float64."""
    dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    return x.to(dtype), y.to(dtype)


def _constants(data_range: float, K: Tuple[float, float]) -> Tuple[float, float]:
    return (K[0] * data_range)**2, (K[1] * data_range)**2


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f'ssim expects two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} '
                         f'and {tuple(y.shape)}')


def _check_components(components: Sequence[str]) -> Tuple[str, ...]:
    components = tuple(components)
    if set(components) - set(COMPONENTS) or not components:
        raise ValueError(f'components must be a non-empty subset of {COMPONENTS}, got {components}')
    return components


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


def _shift(x: Tensor) -> Tensor:
    """(N, C, 1, 1) per-channel mean of ``x``, a constant for autograd: the moments are taken about it."""
    return x.detach().mean((2, 3), keepdim=True)


def _statistics(x: Tensor, y: Tensor, shift_x: Tensor, shift_y: Tensor,
                kernels: List[Tuple[int, Tensor]]) -> Tuple[Tensor, ...]:
    """Blurred x', y', x'^2, y'^2 and x'y' (each (N, C, H', W')) of the shifted maps x' = x - shift_x,
    y' = y - shift_y, filtered together in one pass."""
    channels = x.shape[1]
    stats = x.new_empty(x.shape[0], 5 * channels, *x.shape[2:])
    parts = stats.split(channels, dim=1)
    torch.sub(x, shift_x, out=parts[0])
    torch.sub(y, shift_y, out=parts[1])
    torch.mul(parts[0], parts[0], out=parts[2])
    torch.mul(parts[1], parts[1], out=parts[3])
    torch.mul(parts[0], parts[1], out=parts[4])
    return blur(stats, kernels).split(channels, dim=1)


def _moments(mu_x: Tensor, mu_y: Tensor, e_xx: Tensor, e_yy: Tensor, e_xy: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Raw var_x, var_y and cov (E[ab] - mu_a mu_b) from the shifted statistics, by one and the same
    sequence of operations, so that identical maps give cov == var_x == var_y bit for bit (and the
    contrast-structure term exactly 1) whatever the rounding; not clamped yet."""
    return e_xx - mu_x * mu_x, e_yy - mu_y * mu_y, e_xy - mu_x * mu_y


def _bounded_cs(var_x: Tensor, var_y: Tensor, cov: Tensor, c2: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Contrast-structure (2 cov + C2) / D, D = var_x + var_y + C2, with the bounds that hold
    mathematically enforced against rounding: the variances are clamped at 0 and 2 cov to
    [-(var_x + var_y), var_x + var_y] (which puts CS in [-1, 1]: a flat window in float32, or a map whose
    window shrinks to one pixel, leaves variances of pure rounding noise, positive or negative, that would
    otherwise give any value). Returns CS, 1 / D and the clamped 2 cov; the inputs are left as they are."""
    total = var_x.clamp_min(0) + var_y.clamp_min(0)
    cov2 = torch.clamp(cov * 2, -total, total)
    inv_d = (total + c2).reciprocal_()
    return (cov2 + c2).mul_(inv_d), inv_d, cov2


def _ssim_terms(mu_x: Tensor, mu_y: Tensor, e_xx: Tensor, e_yy: Tensor, e_xy: Tensor, shift_x: Tensor, shift_y: Tensor,
                c1: float, c2: float, cs_only: bool) -> Tuple[Optional[Tensor], ...]:
    """SSIM terms from the shifted statistics of :func:`_statistics`.

    Returns contrast-structure CS of :func:`_bounded_cs` and 1 / D, and (unless ``cs_only``, else None)
    luminance L = 1 - (m_x - m_y)^2 / B with the unshifted local means m and B = m_x^2 + m_y^2 + C1 (that
    is (2 m_x m_y + C1) / B, never above 1, clamped at -1 against rounding), 1 / B, m_x and m_y.
    """
    cs, inv_d, _ = _bounded_cs(*_moments(mu_x, mu_y, e_xx, e_yy, e_xy), c2)
    if cs_only:
        return cs, inv_d, None, None, None, None
    m_x, m_y = mu_x + shift_x, mu_y + shift_y
    inv_b = torch.mul(m_x, m_x).addcmul_(m_y, m_y).add_(c1).reciprocal_()
    lum = torch.sub(m_x, m_y).square_().mul_(inv_b).neg_().add_(1).clamp_min_(-1)
    return cs, inv_d, lum, inv_b, m_x, m_y


class _SSIMFunction(torch.autograd.Function):
    """Per-channel mean of the SSIM map (or of its contrast-structure map) with a hand-written backward.

    Autograd through the plain formula keeps a dozen full-size intermediates per call; this keeps
    only x and y, recomputes the five blurred statistics in the backward pass, and needs one
    transposed blur there (x' = x - shift, mu' the blurred x'):

        dS/dx = blur^T(dS/dmu'_x) + 2 x' blur^T(dS/dE[x'^2]) + y' blur^T(dS/dE[x'y'])   (and alike for y).

    The inputs are float32 or float64 (the callers cast them); both passes run with autocast disabled.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, c1: float, c2: float, win_size: int, win_sigma: float,
                cs_only: bool) -> Tensor:
        with _autocast_disabled(x.device.type):
            kernels = gaussian_kernels(x.shape, win_size, win_sigma, x)
            out = x.new_empty(x.shape[:2])
            for chunk in _channel_chunks(x):
                xc, yc = x[:, chunk], y[:, chunk]
                shift_x, shift_y = _shift(xc), _shift(yc)
                cs, _, lum, *_ = _ssim_terms(*_statistics(xc, yc, shift_x, shift_y, kernels), shift_x, shift_y, c1, c2,
                                             cs_only)
                value = cs if cs_only else cs.mul_(lum)
                out[:, chunk] = value.mean((2, 3))
        ctx.save_for_backward(x, y)
        ctx.kernels, ctx.c1, ctx.c2, ctx.cs_only = kernels, c1, c2, cs_only
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, y = ctx.saved_tensors
        with _autocast_disabled(x.device.type):
            grad_x, grad_y = _SSIMFunction._input_grads(ctx, x, y, grad.to(x.dtype))
        return grad_x, grad_y, None, None, None, None, None

    @staticmethod
    def _input_grads(ctx, x: Tensor, y: Tensor, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        c1, c2, kernels = ctx.c1, ctx.c2, ctx.kernels
        needs = ctx.needs_input_grad[:2]
        grads = [torch.empty_like(t) if need else None for t, need in zip((x, y), needs)]
        for chunk in _channel_chunks(x):
            xc, yc = x[:, chunk], y[:, chunk]
            shift_x, shift_y = _shift(xc), _shift(yc)
            mu_x, mu_y, e_xx, e_yy, e_xy = _statistics(xc, yc, shift_x, shift_y, kernels)
            g = (grad[:, chunk] / (mu_x.shape[2] * mu_x.shape[3]))[..., None, None]
            var_x, var_y, cov = _moments(mu_x, mu_y, e_xx, e_yy, e_xy)
            # a clamp passes no gradient to the quantity it holds at its bound
            live = (var_x >= 0, var_y >= 0)
            cs, inv_d, cov2 = _bounded_cs(var_x, var_y, cov, c2)
            twice = cov * 2
            free, lower = cov2 == twice, cov2 > twice
            g_l = g
            if not ctx.cs_only:
                m_x, m_y = mu_x + shift_x, mu_y + shift_y
                inv_b = torch.mul(m_x, m_x).addcmul_(m_y, m_y).add_(c1).reciprocal_()
                lum = torch.sub(m_x, m_y).square_().mul_(inv_b).neg_().add_(1).clamp_min_(-1)
                g_l = lum * g
            # dS/dvar (var = var_x + var_y, before the variance clamps) and dS/dcov: -L CS / D and 2 L / D
            # where 2 cov is inside its bounds; at -(var_x + var_y) CS = (C2 - var) / (C2 + var), whose
            # derivative is -2 C2 / D^2; at +(var_x + var_y) CS = 1
            g_var = torch.where(free, -cs * inv_d, torch.where(lower, -2 * c2 * inv_d * inv_d, 0)).mul_(g_l)
            g_cov = (2 * inv_d).mul_(free).mul_(g_l)
            # the gradient maps, side by side in one buffer for one transposed blur: per input a,
            # dS/dmu'_a = -2 mu'_a dS/dE[a'^2] - mu'_b dS/dE[a'b'] (+ 2 CS (m_b - L m_a) / B from the luminance)
            # and dS/dE[a'^2] = dS/dvar where var_a > 0; then dS/dE[x'y'] = dS/dcov
            inputs = [i for i in range(2) if needs[i]]
            maps = mu_x.new_empty(mu_x.shape[0], (2 * len(inputs) + 1) * mu_x.shape[1], *mu_x.shape[2:])
            parts = maps.split(mu_x.shape[1], dim=1)
            parts[-1].copy_(g_cov)
            mus = (mu_x, mu_y)
            for slot, i in enumerate(inputs):
                g_mu, g_sq = parts[2 * slot], parts[2 * slot + 1]
                torch.mul(g_var, live[i], out=g_sq)
                torch.mul(mus[i], g_sq, out=g_mu).mul_(-2).addcmul_(mus[1 - i], g_cov, value=-1)
                if not ctx.cs_only:
                    m_a, m_b = (m_x, m_y) if i == 0 else (m_y, m_x)
                    g_mu.add_((m_b - lum * m_a).mul_(inv_b).mul_(cs).mul_(2 * g).mul_(lum > -1))
            back = blur_transposed(maps, kernels).split(xc.shape[1], dim=1)
            shifted = (xc - shift_x, yc - shift_y)
            for slot, i in enumerate(inputs):
                grads[i][:, chunk] = torch.addcmul(
                    back[2 * slot], shifted[i], back[2 * slot + 1], value=2).addcmul_(shifted[1 - i], back[-1])
        return grads[0], grads[1]


def _sqrt_bounded_grad(var: Tensor, floor: float) -> Tensor:
    """sqrt(var) (var >= 0) whose gradient is that of sqrt(var + floor): the value stays exact (so that
    the contrast and structure terms stay <= 1), the gradient stays finite at zero variance."""
    exact = var.detach().sqrt()
    smooth = var.add(floor).sqrt()
    return exact + (smooth - smooth.detach())


def _ssim_maps(x: Tensor, y: Tensor, data_range: float, win_size: int, win_sigma: float, K: Tuple[float, float],
               components: Sequence[str]) -> Tuple[Tensor, Tensor]:
    """Per-pixel luminance map and product of the selected contrast / structure maps (each (N, C, H', W')),
    through autograd (the components ablation; full SSIM goes through :class:`_SSIMFunction`). Inputs
    are float32 or float64, autocast disabled by the caller."""
    components = _check_components(components)
    c1, c2 = _constants(data_range, K)
    c = x.shape[1]
    shift_x, shift_y = _shift(x), _shift(y)
    xs, ys = x - shift_x, y - shift_y
    # one depthwise filtering pass over the five statistics instead of five passes
    stats = blur(
        torch.cat([xs, ys, xs * xs, ys * ys, xs * ys], dim=1), gaussian_kernels(x.shape, win_size, win_sigma, x))
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(c, dim=1)
    var_x, var_y, cov = _moments(mu_x, mu_y, e_xx, e_yy, e_xy)

    if 'luminance' in components:
        m_x, m_y = mu_x + shift_x, mu_y + shift_y
        luminance = (1 - (m_x - m_y)**2 / (m_x * m_x + m_y * m_y + c1)).clamp_min(-1)
    else:
        luminance = torch.ones_like(cov)
    if 'contrast' in components and 'structure' in components:
        return luminance, _bounded_cs(var_x, var_y, cov, c2)[0]
    if 'contrast' not in components and 'structure' not in components:
        return luminance, torch.ones_like(cov)
    # apart, the terms need sigma_x sigma_y. A variance below the rounding error of E[x'^2] - mu'^2 is
    # rounding noise (a flat window in float32 gives about 1e-9, whose square root 3e-5 would then count
    # as contrast): it is taken as 0, as is a slightly negative one.
    noise = 8 * torch.finfo(x.dtype).eps
    var_x = var_x.masked_fill(var_x <= noise * e_xx, 0)
    var_y = var_y.masked_fill(var_y <= noise * e_yy, 0)
    floor = 1e-6 * c2
    sd_xy = _sqrt_bounded_grad(var_x, floor) * _sqrt_bounded_grad(var_y, floor)
    if 'contrast' in components:
        # 2 sigma_x sigma_y <= sigma_x^2 + sigma_y^2, but the product of two rounded square roots may exceed it
        return luminance, ((2 * sd_xy + c2) / (var_x + var_y + c2)).clamp_max(1)
    # |cov| <= sigma_x sigma_y (Cauchy-Schwarz) keeps the structure term in [-1, 1]; rounding noise, or a
    # variance taken as 0 above, would break it
    cov = torch.maximum(torch.minimum(cov, sd_xy), -sd_xy)
    return luminance, (cov + c2 / 2) / (sd_xy + c2 / 2)


def ssim(x: Tensor,
         y: Tensor,
         data_range: float = 255.0,
         win_size: int = 11,
         win_sigma: float = 1.5,
         K: Tuple[float, float] = (0.01, 0.03),
         components: Sequence[str] = COMPONENTS,
         reduction: str = 'image') -> Tensor:
    """Structural similarity of ``x`` and ``y`` (N, C, H, W), computed in float32 (float64 for float64
    inputs) with autocast disabled.

    Args:
        data_range: value range L of the inputs (255 for 8-bit images, 1 for maps in [0, 1]).
        win_size, win_sigma: Gaussian window (odd size); shrunk for maps smaller than it.
        K: (K1, K2) stabilisers.
        components: which of luminance, contrast and structure to multiply (the ablation of the
            SSIM-KD paper); all three is standard SSIM.
        reduction: ``'image'`` -> (N,) mean over channels and pixels (pytorch-msssim's
            ``size_average=False``); ``'channel'`` -> (N, C); ``'mean'`` -> scalar.

    Returns:
        Tensor: SSIM reduced as ``reduction`` says, float32 (float64 for float64 inputs).
    """
    if win_size < 1 or win_size % 2 != 1:
        raise ValueError(f'win_size must be an odd integer >= 1, got {win_size}')
    _check_pair(x, y)
    with _autocast_disabled(x.device.type):
        x, y = _full_precision(x, y)
        if set(components) == set(COMPONENTS):
            per_channel = _ssim_per_channel(x, y, data_range, win_size, win_sigma, K, cs_only=False)
        else:
            luminance, cs = _ssim_maps(x, y, data_range, win_size, win_sigma, K, components)
            per_channel = (luminance * cs).flatten(2).mean(-1)
        return _reduce(per_channel, reduction)


def _ssim_per_channel(x: Tensor, y: Tensor, data_range: float, win_size: int, win_sigma: float, K: Tuple[float, float],
                      cs_only: bool) -> Tensor:
    """(N, C) mean SSIM (or contrast-structure) through the fused function."""
    c1, c2 = _constants(data_range, K)
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
            eps: float = 0.0,
            multiscale: str = 'downsample') -> Tensor:
    """Multi-scale SSIM of ``x`` and ``y`` (N, C, H, W); arguments as :func:`ssim`, computed in float32
    (float64 for float64 inputs) with autocast disabled.

    Args:
        weights: per-level exponents, default the five of Wang et al. 2003.
        eps: floor of each level's value before the power; 0 reproduces pytorch-msssim (whose
            gradient is infinite where a level's value is 0); losses use a small positive value.
        multiscale: how level j (0-based) sees a coarser scale.
            ``'downsample'`` (default): the maps are halved by 2x2 average pooling between levels and
            the window stays ``win_size`` (Wang et al. 2003, the MS-SSIM that the SSIM-KD appendix cites
            and that pytorch-msssim computes). ``'window'``: the maps stay as they are and the window
            grows instead, to ``(win_size - 1) * 2**j + 1`` pixels with sigma ``win_sigma * 2**j``, so
            that it covers about the area of a level-j window of ``'downsample'``; this is MS-SSIM as
            the SSIM-KD appendix (A.1) describes it ("varying window sizes on the same feature map"),
            which names no sizes: these are mmkd's. Windows larger than a map are shrunk as in
            :func:`ssim`.

    Returns:
        Tensor: MS-SSIM reduced as ``reduction`` says.
    """
    if multiscale not in MULTISCALE_MODES:
        raise ValueError(f'multiscale must be one of {MULTISCALE_MODES}, got {multiscale!r}')
    if win_size < 1 or win_size % 2 != 1:
        raise ValueError(f'win_size must be an odd integer >= 1, got {win_size}')
    _check_pair(x, y)
    with _autocast_disabled(x.device.type):
        x, y = _full_precision(x, y)
        weights = x.new_tensor(MS_SSIM_WEIGHTS if weights is None else weights)
        values = []
        for level in range(len(weights)):
            last = level == len(weights) - 1
            if multiscale == 'window':
                size, sigma = (win_size - 1) * 2**level + 1, win_sigma * 2**level
                values.append(_ssim_per_channel(x, y, data_range, size, sigma, K, cs_only=not last))
                continue
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
