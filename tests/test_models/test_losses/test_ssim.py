import itertools

import pytest
import pytorch_msssim
import torch

from mmkd.models.losses import COMPONENTS, L1MSSSIMLoss, MSSSIMLoss, SSIMLoss, minmax_normalize, ms_ssim, ssim


def _pair(shape, seed=0, scale=255.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * scale
    y = (x + torch.randn(shape, generator=g, dtype=torch.float64) * scale * 0.2).clamp(0, scale)
    return x, y


@pytest.mark.parametrize('shape', [(2, 3, 11, 11), (2, 4, 40, 57), (1, 16, 100, 167)])
def test_ssim_equals_pytorch_msssim(shape):
    x, y = _pair(shape)
    ours = ssim(x, y)
    ref = pytorch_msssim.ssim(x, y, size_average=False)
    assert ours.shape == ref.shape == (shape[0], )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_ssim_equals_pytorch_msssim_other_range_and_float32():
    x, y = _pair((2, 8, 32, 48), seed=1, scale=1.0)
    torch.testing.assert_close(
        ssim(x.float(), y.float(), data_range=1.0),
        pytorch_msssim.ssim(x.float(), y.float(), data_range=1.0, size_average=False),
        atol=1e-5,
        rtol=0)


def test_ms_ssim_equals_pytorch_msssim():
    x, y = _pair((2, 3, 180, 200), seed=2)
    torch.testing.assert_close(ms_ssim(x, y), pytorch_msssim.ms_ssim(x, y, size_average=False), atol=1e-5, rtol=0)


def test_ssim_identical_is_one_and_reductions():
    x, _ = _pair((2, 3, 16, 16))
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=x.dtype))
    assert ssim(x, x, reduction='channel').shape == (2, 3)
    assert ssim(x, x, reduction='mean').dim() == 0


def test_small_maps_use_a_shrunk_window():
    # 7x11 and 1x2 maps (P7 of 800x1333, and smaller): finite values, 1 for identical maps,
    # lower for different ones, and for a map exactly as large as the shrunk window the value equals
    # a brute-force computation with one Gaussian window over the whole map.
    for shape in [(2, 4, 7, 11), (2, 4, 1, 2), (1, 1, 1, 1)]:
        x, y = _pair(shape, scale=1.0)
        same = ssim(x, x, data_range=1.0)
        diff = ssim(x, y, data_range=1.0)
        assert torch.isfinite(diff).all() and torch.allclose(same, torch.ones_like(same))
    x, y = _pair((1, 1, 7, 7), scale=1.0)
    coords = torch.arange(7, dtype=x.dtype) - 3
    sigma = 1.5 * 7 / 11
    g = torch.exp(-coords**2 / (2 * sigma**2))
    w = torch.outer(g, g) / torch.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cxy = (w * x * y).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    brute = (2 * mx * my + c1) / (mx**2 + my**2 + c1) * (2 * cxy + c2) / (vx + vy + c2)
    torch.testing.assert_close(ssim(x, y, data_range=1.0)[0], brute)


def test_components_ablation():
    from mmkd.models.losses.ssim import _ssim_maps
    x, y = _pair((2, 3, 24, 24), scale=1.0)
    args = (1.0, 11, 1.5, (0.01, 0.03))
    # contrast and structure computed apart multiply to the joint term, since C3 = C2 / 2
    _, contrast = _ssim_maps(x, y, *args, components=('contrast', ))
    _, structure = _ssim_maps(x, y, *args, components=('structure', ))
    _, joint = _ssim_maps(x, y, *args, components=('contrast', 'structure'))
    torch.testing.assert_close(contrast * structure, joint, atol=1e-6, rtol=1e-6)
    assert (contrast <= 1 + 1e-9).all()
    # luminance alone differs from full SSIM, and full SSIM = mean of luminance * joint
    luminance, _ = _ssim_maps(x, y, *args, components=('luminance', ))
    full = ssim(x, y, data_range=1.0)
    torch.testing.assert_close(full, (luminance * joint).flatten(1).mean(1))
    assert not torch.allclose(ssim(x, y, data_range=1.0, components=('luminance', )), full)
    with pytest.raises(ValueError, match='components'):
        ssim(x, y, components=('shape', ))


@pytest.mark.parametrize('loss_cls', [SSIMLoss, MSSSIMLoss, L1MSSSIMLoss])
@pytest.mark.parametrize('kind', ['constant', 'zeros', 'large', 'small_map', 'random'])
def test_losses_finite_with_finite_gradients(loss_cls, kind):
    torch.manual_seed(0)
    shape = (2, 8, 3, 5) if kind == 'small_map' else (2, 8, 32, 32)
    target = {
        'constant': torch.full(shape, 3.0),
        'zeros': torch.zeros(shape),
        'large': torch.randn(shape) * 1e4,
    }.get(kind, torch.randn(shape))
    pred = (torch.zeros(shape) if kind in ('constant', 'zeros') else torch.randn(shape) * target.abs().max())
    pred.requires_grad_(True)
    for normalize in ('minmax', None):
        loss = loss_cls(loss_weight=2.0, normalize=normalize)(pred, target)
        (grad, ) = torch.autograd.grad(loss, pred)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), (kind, normalize)


def test_loss_values():
    x, y = _pair((2, 4, 32, 32), scale=1.0)
    x, y = x.float(), y.float()
    loss = SSIMLoss(loss_weight=3.0, normalize=None)(x, y)
    torch.testing.assert_close(loss, 3.0 * (1 - ssim(x, y, data_range=1.0).mean()))
    assert SSIMLoss(normalize='minmax')(x * 10 + 5, x).abs() < 1e-4  # normalisation removes scale and shift
    big_x, big_y = _pair((1, 2, 180, 180), scale=1.0)
    l1ms = L1MSSSIMLoss(alpha=0.15, normalize=None)(big_x, big_y)
    expected = 0.15 * (big_x - big_y).abs().mean() + 0.85 * (1 - pytorch_msssim.ms_ssim(big_x, big_y, data_range=1.0))
    torch.testing.assert_close(l1ms, expected.float(), atol=1e-5, rtol=0)


def test_minmax_normalize_range_and_constant_channel():
    x = torch.randn(2, 3, 5, 5) * 7
    x[0, 1] = 4.0
    n = minmax_normalize(x)
    assert n.min() >= 0 and n.max() <= 1
    assert torch.all(n[0, 1] == 0)
    assert torch.allclose(n[1, 0].max(), torch.tensor(1.0), atol=1e-5)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match='one shape'):
        SSIMLoss()(torch.zeros(1, 2, 8, 8), torch.zeros(1, 3, 8, 8))


@pytest.fixture(params=['banded-chunked', 'conv-whole'])
def blur_path(request, monkeypatch):
    """Both ways of filtering (banded matmul, depthwise convolution) and both ways of walking the channels
    (a few at a time on the CPU, all at once on other devices)."""
    import importlib
    ssim_module = importlib.import_module('mmkd.models.losses.ssim')
    banded = request.param.startswith('banded')
    monkeypatch.setenv('MMKD_SSIM_FILTER', 'banded' if banded else 'conv')
    monkeypatch.setattr(ssim_module, '_CHUNK_ELEMENTS', 1 if banded else 10**12)
    return request.param


@pytest.mark.parametrize('shape', [(2, 3, 14, 17), (1, 2, 5, 12), (1, 2, 1, 7)])
@pytest.mark.parametrize('cs_only', [False, True])
def test_fused_backward_matches_autograd_and_gradcheck(blur_path, shape, cs_only):
    from mmkd.models.losses.ssim import COMPONENTS, _ssim_maps, _SSIMFunction
    x, y = _pair(shape, scale=1.0)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: _SSIMFunction.apply(a, b, 1e-4, 9e-4, 11, 1.5, cs_only), (x, y))
    # against autograd through the plain formula, with an arbitrary upstream gradient
    luminance, cs = _ssim_maps(x, y, 1.0, 11, 1.5, (0.01, 0.03), COMPONENTS)
    ref = (cs if cs_only else luminance * cs).flatten(2).mean(-1)
    weight = torch.rand_like(ref)
    ref_grads = torch.autograd.grad((ref * weight).sum(), (x, y))
    out = _SSIMFunction.apply(x, y, 1e-4, 9e-4, 11, 1.5, cs_only)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    for ours, theirs in zip(torch.autograd.grad((out * weight).sum(), (x, y)), ref_grads):
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-9)


def test_gradient_equals_pytorch_msssim(blur_path):
    x, y = _pair((2, 4, 30, 41), seed=3, scale=1.0)
    x.requires_grad_()
    (ours, ) = torch.autograd.grad(ssim(x, y, data_range=1.0).sum(), x)
    (ref, ) = torch.autograd.grad(pytorch_msssim.ssim(x, y, data_range=1.0, size_average=False).sum(), x)
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=1e-6)
    torch.testing.assert_close(
        ssim(x, y, data_range=1.0), pytorch_msssim.ssim(x, y, data_range=1.0, size_average=False), atol=1e-5, rtol=0)


def test_channel_groups_cover_every_channel_once_per_device_budget():
    import importlib
    ssim_module = importlib.import_module('mmkd.models.losses.ssim')
    for device, budget in (('cpu', ssim_module._CHUNK_ELEMENTS), ('meta', ssim_module._CHUNK_ELEMENTS_GPU)):
        x = torch.empty(8, 256, 100, 168, device=device)
        chunks = ssim_module._channel_chunks(x)
        covered = [c for chunk in chunks for c in range(256)[chunk]]
        assert covered == list(range(256))
        per_group = max(1, budget // (8 * 100 * 168))
        assert len(chunks) == -(-256 // per_group)


def _brute_force_ssim(x, y, data_range, win_size=11, win_sigma=1.5, K=(0.01, 0.03), components=COMPONENTS):
    """(N,) SSIM from Wang et al.'s formulas, in float64, one window position at a time: two-pass moments,
    exact square roots, C3 = C2 / 2; windows shrunk per dimension as mmkd documents."""
    x, y = x.double(), y.double()
    c1, c2 = (K[0] * data_range)**2, (K[1] * data_range)**2
    gauss = []
    for length in x.shape[2:]:
        size = win_size if length >= win_size else (length if length % 2 else length - 1)
        sigma = win_sigma * size / win_size
        g = torch.exp(-(torch.arange(size, dtype=torch.float64) - size // 2)**2 / (2 * sigma**2))
        gauss.append(g / g.sum())
    w = torch.outer(*gauss)
    kh, kw = w.shape
    n, c, h, wd = x.shape
    out = torch.zeros(n, dtype=torch.float64)
    for b in range(n):
        values = []
        for ch in range(c):
            for i in range(h - kh + 1):
                for j in range(wd - kw + 1):
                    px, py = x[b, ch, i:i + kh, j:j + kw], y[b, ch, i:i + kh, j:j + kw]
                    mx, my = (w * px).sum(), (w * py).sum()
                    vx, vy = (w * (px - mx)**2).sum(), (w * (py - my)**2).sum()
                    cov = (w * (px - mx) * (py - my)).sum()
                    value = torch.tensor(1.0, dtype=torch.float64)
                    if 'luminance' in components:
                        value = value * (2 * mx * my + c1) / (mx**2 + my**2 + c1)
                    if 'contrast' in components:
                        value = value * (2 * vx.sqrt() * vy.sqrt() + c2) / (vx + vy + c2)
                    if 'structure' in components:
                        value = value * (cov + c2 / 2) / (vx.sqrt() * vy.sqrt() + c2 / 2)
                    values.append(value)
        out[b] = torch.stack(values).mean()
    return out


ALL_COMBINATIONS = [c for r in (1, 2, 3) for c in itertools.combinations(COMPONENTS, r)]


def _component_cases():
    """Maps where the components are easy to get wrong: random, a flat region (zero-variance windows)
    beside texture, and raw constant maps with a large offset."""
    x, y = _pair((1, 2, 13, 24), seed=4, scale=1.0)
    flat_x, flat_y = x.clone(), y.clone()
    flat_x[..., :14] = 0.25  # the 4 leftmost window columns see a constant x
    flat_y[..., :12] = 0.6  # the 2 leftmost ones a constant y too
    return {
        'random': (x, y),
        'flat-region': (flat_x, flat_y),
        'raw-constant': (torch.full((1, 2, 13, 24), 50.0), torch.full((1, 2, 13, 24), 49.0)),
        'raw-offset': (x * 0.1 + 30, y * 0.1 + 30),
    }


@pytest.mark.parametrize('case', ['random', 'flat-region', 'raw-constant', 'raw-offset'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_every_component_combination_equals_brute_force(case, dtype, blur_path):
    # before the fix: constant raw maps gave contrast / structure > 1 in float32 (E[x^2] - E[x]^2 cancelled
    # to rounding noise), and a zero-variance window's contrast was off by 1e-4 (a 1e-12 floor in the sqrt)
    x, y = _component_cases()[case]
    tol = 1e-9 if dtype == torch.float64 else 2e-6
    for components in ALL_COMBINATIONS:
        ref = _brute_force_ssim(x, y, data_range=1.0, components=components)
        ours = ssim(x.to(dtype), y.to(dtype), data_range=1.0, components=components)
        torch.testing.assert_close(ours.double(), ref, atol=tol, rtol=0, msg=f'{case} {components}')
        assert (ours <= 1 + tol).all(), (case, components)


def test_ssim_loss_uses_its_components():
    # each component set gives its own value, equal to 1 - the brute-force SSIM of that set
    x, y = _component_cases()['flat-region']
    x, y = x.float(), y.float()
    losses = {}
    for components in ALL_COMBINATIONS:
        losses[components] = SSIMLoss(loss_weight=2.0, normalize=None, components=components)(x, y)
        expected = 2.0 * (1 - _brute_force_ssim(x, y, data_range=1.0, components=components)).float()
        torch.testing.assert_close(losses[components], expected[0], atol=2e-5, rtol=0, msg=str(components))
    values = sorted(v.item() for v in losses.values())
    assert min(b - a for a, b in zip(values, values[1:])) > 1e-3  # distinguishable sets


def test_ms_ssim_window_variant_equals_growing_windows_on_the_same_map():
    # the SSIM-KD appendix's MS-SSIM: level j = Gaussian window (W - 1) 2^j + 1, sigma 1.5 * 2^j, no pooling
    import importlib
    pm = importlib.import_module('pytorch_msssim.ssim')
    x, y = _pair((2, 3, 48, 50), seed=5, scale=1.0)
    weights = (0.3, 0.3, 0.4)
    expected = torch.ones(2, 3, dtype=x.dtype)
    for level, weight in enumerate(weights):
        win = pm._fspecial_gauss_1d(10 * 2**level + 1, 1.5 * 2**level).repeat(3, 1, 1, 1).double()
        full, cs = pm._ssim(x, y, data_range=1.0, win=win, size_average=False)
        expected *= (full if level == len(weights) - 1 else cs).relu()**weight
    ours = ms_ssim(x, y, data_range=1.0, weights=weights, multiscale='window', reduction='channel')
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)  # pytorch-msssim's window is float32
    assert not torch.allclose(ours, ms_ssim(x, y, data_range=1.0, weights=weights, reduction='channel'))
    loss = MSSSIMLoss(normalize=None, weights=weights, multiscale='window')(x.float(), y.float())
    torch.testing.assert_close(loss, (1 - expected.mean()).float(), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='multiscale'):
        MSSSIMLoss(multiscale='pyramid')


LOSSES_UNDER_TEST = {
    'ssim': lambda: SSIMLoss(loss_weight=2.0),
    'ssim-structure': lambda: SSIMLoss(components=('structure', )),
    'ssim-raw': lambda: SSIMLoss(normalize=None, data_range=4.0),
    'ms-ssim': lambda: MSSSIMLoss(loss_weight=2.0),
    'ms-ssim-window': lambda: MSSSIMLoss(multiscale='window'),
    'l1-ms-ssim': lambda: L1MSSSIMLoss(),
}


@pytest.mark.parametrize('name', list(LOSSES_UNDER_TEST))
def test_losses_under_cpu_bfloat16_autocast_equal_float32(name, blur_path):
    # under autocast the neck's outputs are bfloat16 and matmul / conv would run in bfloat16: before the
    # fix the banded path crashed (dtype mismatch) and the convolution path computed the statistics in
    # bfloat16 (wrong values, a negative MS-SSIM loss)
    g = torch.Generator().manual_seed(0)
    # bfloat16 maps, as a neck computes them under autocast
    student = torch.randn(2, 8, 40, 44, generator=g).bfloat16().requires_grad_()
    teacher = (torch.randn(2, 8, 40, 44, generator=g) + 3).bfloat16()
    loss_fn = LOSSES_UNDER_TEST[name]()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = loss_fn(student, teacher)
    (grad, ) = torch.autograd.grad(loss, student)
    # reference: the same values in float32, without autocast
    student_ref = student.detach().float().requires_grad_()
    ref = loss_fn(student_ref, teacher.float())
    (grad_ref, ) = torch.autograd.grad(ref, student_ref)
    assert loss.dtype == torch.float32 and loss >= 0
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-5)
    # the gradient reaches the bfloat16 map rounded to bfloat16
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad.float(), grad_ref.bfloat16().float(), atol=0, rtol=0)


def test_nearly_constant_channel_has_a_bounded_gradient():
    # a channel that varies by `spread` around 3: min-max normalisation divided by its range, so the
    # gradient grew as 1 / spread; now the divisor is at least rel_eps = 1 % of the widest channel's
    # range, and the gradient stops growing below that
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 4, 24, 24, generator=g)
    noise = torch.randn(2, 24, 24, generator=g)
    target = torch.randn(2, 4, 24, 24, generator=g)
    for loss_cls in (SSIMLoss, MSSSIMLoss, L1MSSSIMLoss):
        peaks = []
        for spread in (1e-5, 1e-6, 1e-7):
            pred = base.clone()
            pred[:, 2] = 3 + spread * noise
            pred.requires_grad_()
            (grad, ) = torch.autograd.grad(loss_cls()(pred, target), pred)
            peaks.append(grad[:, 2].abs().max().item())
        assert max(peaks) < 2 * min(peaks), (loss_cls.__name__, peaks)
        if loss_cls is SSIMLoss:
            assert max(peaks) < 1.0, peaks
    # the bound does not touch ordinary channels: they still span [0, 1]
    normalised = minmax_normalize(pred.detach())
    torch.testing.assert_close(normalised[:, [0, 1, 3]].amax((2, 3)), torch.ones(2, 3), atol=1e-5, rtol=0)
    assert normalised[:, 2].max() < 1e-3


def test_gaussian_filter_paths_agree_and_the_auto_choice_is_measured_once(monkeypatch, tmp_path):
    from mmkd.models.losses import gaussian_filter as gf
    monkeypatch.setenv('MMKD_CACHE_DIR', str(tmp_path / 'machine_a'))
    x = torch.randn(2, 6, 30, 41, dtype=torch.float64)
    kernels = gf.gaussian_kernels(x.shape, 11, 1.5, x)
    g = torch.randn(2, 6, 20, 31, dtype=torch.float64)
    results = {}
    for mode in ('banded', 'conv'):
        monkeypatch.setenv('MMKD_SSIM_FILTER', mode)
        out = gf.blur(x, kernels)
        back = gf.blur_transposed(g, kernels)
        # the adjoint: <blur(x), g> = <x, blur^T(g)>
        torch.testing.assert_close((out * g).sum(), (x * back).sum(), atol=1e-10, rtol=0)
        results[mode] = (out, back)
    for a, b in zip(results['banded'], results['conv']):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)

    # auto: both paths timed once per (shape, dimension, direction, dtype, threads), then the cached choice
    monkeypatch.setenv('MMKD_SSIM_FILTER', 'auto')
    monkeypatch.setattr(gf, '_CHOICES', {})
    timed = []

    def fake_timing(fn, *args, **kwargs):
        timed.append(fn)
        return 1.0 if fn is gf._banded else 0.5  # the convolution is faster on this "CPU"

    monkeypatch.setattr(gf, '_fastest_seconds', fake_timing)
    for _ in range(3):
        torch.testing.assert_close(gf.blur(x, kernels), results['conv'][0], atol=0, rtol=0)
    assert len(timed) == 4 and len(gf._CHOICES) == 2 and not any(gf._CHOICES.values())
    # the choice is kept on disk: a later process on this machine (e.g. a resumed run) takes the same path
    # even where its own timing would now say otherwise, so that its numbers continue bit for bit
    monkeypatch.setattr(gf, '_CHOICES', {})
    monkeypatch.setattr(gf, '_fastest_seconds', lambda fn, *a, **k: 0.5 if fn is gf._banded else 1.0)
    assert not gf.use_banded(x, 2, kernels[0][1], adjoint=False)
    # without that file (another machine, or a cache that cannot be written), the path is measured anew
    monkeypatch.setenv('MMKD_CACHE_DIR', str(tmp_path / 'machine_b'))
    monkeypatch.setattr(gf, '_CHOICES', {})
    assert gf.use_banded(x, 2, kernels[0][1], adjoint=False)
    (tmp_path / 'readonly').write_text('a file where the cache folder should be')
    monkeypatch.setenv('MMKD_CACHE_DIR', str(tmp_path / 'readonly'))
    monkeypatch.setattr(gf, '_CHOICES', {})
    assert gf.use_banded(x, 2, kernels[0][1], adjoint=False)
    assert not gf.use_banded(x.to('meta'), 3, kernels[1][1].to('meta'), adjoint=False)  # not a CPU
    monkeypatch.setenv('MMKD_SSIM_FILTER', 'fastest')
    with pytest.raises(ValueError, match='MMKD_SSIM_FILTER'):
        gf.blur(x, kernels)
