"""Separable Gaussian 'valid' filtering of (N, C, H, W) maps and its adjoint, for the SSIM losses.

Two ways compute the same sums: a depthwise convolution, and, on the CPU, products with a banded matrix
B (B[j + i, j] = kernel[i]): along H one batched product (H' x H) @ (H x W) per map; along W tiles of
``_TILE`` output columns, each a GEMM with the (_TILE + k - 1) x _TILE block of B, so that few of the
multiplied entries are zeros. Which one is faster depends on the CPU (the GEMM wins on some, loses on
others: see ``bench/README.md``), the shape and the thread count, so on the CPU the path is chosen per
call signature (shape, filtered dimension, direction, dtype, threads) by timing both once. Other devices
use the convolution.

The two paths agree to float rounding, not bit for bit, so a choice once made is kept: in the process,
and on disk in ``$MMKD_CACHE_DIR/ssim_filter_paths.json`` (default ``~/.cache/mmkd``), keyed on the CPU
model as well, so that a resumed run on the same kind of machine takes the same paths as the run it
continues (``--resume`` stays bit for bit). Where the cache cannot be written the choice lives for the
process only. The environment variable ``MMKD_SSIM_FILTER=conv`` (or ``banded``) pins the path
(default ``auto``), e.g. for runs that must match across different CPUs.
"""
import functools
import json
import os
import os.path as osp
import platform
import time
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

# dimensions longer than this always use the convolution: the H product multiplies the whole
# (H' x H) band, whose cost grows with H^2
_BANDED_MAX_LENGTH = 256
_TILE = 32
_BANDS: Dict[tuple, Tensor] = {}
_CHOICES: Dict[str, bool] = {}
_MODES = ('auto', 'banded', 'conv')


def window(length: int, win_size: int, win_sigma: float) -> Tuple[int, float]:
    """Window size and sigma along a dimension of ``length`` pixels (shrunk when it does not fit)."""
    if length >= win_size:
        return win_size, win_sigma
    size = length if length % 2 else length - 1
    return size, win_sigma * size / win_size


def gaussian_kernels(shape: torch.Size, win_size: int, win_sigma: float, like: Tensor) -> List[Tuple[int, Tensor]]:
    """The normalised 1-D Gaussian of each spatial dimension of a map of ``shape`` (N, C, H, W), as
    (dimension, kernel) pairs; a dimension where the window shrinks to 1 pixel is not filtered."""
    kernels = []
    for dim in (2, 3):
        size, sigma = window(shape[dim], win_size, win_sigma)
        if size > 1:
            coords = torch.arange(size, dtype=like.dtype, device=like.device) - size // 2
            g = torch.exp(-coords**2 / (2 * sigma**2))
            kernels.append((dim, g / g.sum()))
    return kernels


def _mode() -> str:
    mode = os.environ.get('MMKD_SSIM_FILTER', 'auto')
    if mode not in _MODES:
        raise ValueError(f'environment variable MMKD_SSIM_FILTER must be one of {_MODES}, got {mode!r}')
    return mode


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


def _banded(x: Tensor, dim: int, kernel: Tensor, adjoint: bool) -> Tensor:
    if adjoint:
        band = _band(x.shape[dim] + kernel.numel() - 1, kernel)
        return _rows_times(x, band, adjoint=True) if dim == 3 else band @ x
    band = _band(x.shape[dim], kernel)
    return _rows_times(x, band, adjoint=False) if dim == 3 else band.t() @ x


def _conv(x: Tensor, dim: int, kernel: Tensor, adjoint: bool) -> Tensor:
    shape = (1, 1, kernel.numel(), 1) if dim == 2 else (1, 1, 1, kernel.numel())
    weight = kernel.view(shape).expand(x.shape[1], -1, -1, -1)
    if adjoint:
        return F.conv_transpose2d(x, weight, groups=x.shape[1])
    return F.conv2d(x, weight, groups=x.shape[1])


def _fastest_seconds(fn, x: Tensor, dim: int, kernel: Tensor, adjoint: bool, repeat: int = 3) -> float:
    fn(x, dim, kernel, adjoint)  # first call: allocations, band construction
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        fn(x, dim, kernel, adjoint)
        best = min(best, time.perf_counter() - start)
    return best


def use_banded(x: Tensor, dim: int, kernel: Tensor, adjoint: bool) -> bool:
    """Whether filtering ``x`` along ``dim`` goes through the banded matrix (see the module docstring)."""
    length = x.shape[dim] + (kernel.numel() - 1 if adjoint else 0)
    if x.device.type != 'cpu' or length > _BANDED_MAX_LENGTH:
        return False
    mode = _mode()
    if mode != 'auto':
        return mode == 'banded'
    key = '|'.join(
        map(str, (_cpu_model(), tuple(x.shape), dim, kernel.numel(), adjoint, x.dtype, torch.get_num_threads())))
    if not _CHOICES:
        _CHOICES.update(_read_choices())
    choice = _CHOICES.get(key)
    if choice is None:
        with torch.no_grad():
            probe = x.detach()
            choice = (
                _fastest_seconds(_banded, probe, dim, kernel, adjoint)
                < _fastest_seconds(_conv, probe, dim, kernel, adjoint))
        _CHOICES[key] = choice
        _write_choices(key, choice)
    return _CHOICES[key]


@functools.lru_cache(maxsize=None)
def _cpu_model() -> str:
    """The CPU's model name, read once per process (the path choices are keyed on it on every filtering)."""
    try:
        with open('/proc/cpuinfo') as f:
            return next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                        platform.processor())
    except OSError:
        return platform.processor() or platform.machine()


def _choices_file() -> str:
    folder = os.environ.get('MMKD_CACHE_DIR') or osp.join(osp.expanduser('~'), '.cache', 'mmkd')
    return osp.join(folder, 'ssim_filter_paths.json')


def _read_choices() -> Dict[str, bool]:
    """The path choices made earlier on this machine; nothing where the file is absent or unreadable."""
    try:
        with open(_choices_file()) as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict):
        return {}
    return {k: v for k, v in stored.items() if isinstance(v, bool)}


def _write_choices(key: str, choice: bool) -> None:
    """Add one choice to the file (atomically; choices written meanwhile by other processes are kept, and
    a choice already there wins, so that concurrent processes converge on the first one stored)."""
    from mmkd.utils.safe_save import atomic_write
    stored = _read_choices()
    if key in stored:
        _CHOICES[key] = stored[key]
        return
    stored[key] = choice
    try:
        atomic_write(json.dumps(stored, indent=0, sort_keys=True), _choices_file())
    except OSError:
        pass  # a read-only home: the choice lives for this process only


def filter_valid(x: Tensor, dim: int, kernel: Tensor) -> Tensor:
    """'valid' filtering of ``x`` (N, C, H, W) along ``dim`` (2 or 3) with the 1-D ``kernel`` (k,):
    the output is k - 1 shorter along ``dim``."""
    fn = _banded if use_banded(x, dim, kernel, adjoint=False) else _conv
    return fn(x, dim, kernel, adjoint=False)


def filter_valid_adjoint(g: Tensor, dim: int, kernel: Tensor) -> Tensor:
    """Adjoint of :func:`filter_valid`: spreads ``g`` back onto the input grid (a 'full' filtering, k - 1
    longer along ``dim``)."""
    fn = _banded if use_banded(g, dim, kernel, adjoint=True) else _conv
    return fn(g, dim, kernel, adjoint=True)


def blur(x: Tensor, kernels: List[Tuple[int, Tensor]]) -> Tensor:
    """Separable Gaussian 'valid' filtering of every channel of ``x`` (N, C, H, W) with the (dimension,
    kernel) pairs of :func:`gaussian_kernels`; (N, C, H', W')."""
    for dim, kernel in kernels:
        x = filter_valid(x, dim, kernel)
    return x


def blur_transposed(g: Tensor, kernels: List[Tuple[int, Tensor]]) -> Tensor:
    """Adjoint of :func:`blur`: (N, C, H', W') -> (N, C, H, W)."""
    for dim, kernel in reversed(kernels):
        g = filter_valid_adjoint(g, dim, kernel)
    return g
