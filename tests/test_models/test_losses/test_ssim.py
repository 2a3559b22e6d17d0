import pytest
import pytorch_msssim
import torch

from mmkd.models.losses import L1MSSSIMLoss, MSSSIMLoss, SSIMLoss, minmax_normalize, ms_ssim, ssim


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
        pytorch_msssim.ssim(x.float(), y.float(), data_range=1.0, size_average=False), atol=1e-5, rtol=0)


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


@pytest.fixture(params=['matmul-chunked', 'conv-whole'])
def blur_path(request, monkeypatch):
    """Both ways of filtering (banded matmul for short CPU maps, depthwise convolution elsewhere) and both
    ways of walking the channels (a few at a time on the CPU, all at once on other devices)."""
    import importlib
    ssim_module = importlib.import_module('mmkd.models.losses.ssim')
    matmul = request.param.startswith('matmul')
    monkeypatch.setattr(ssim_module, '_MATMUL_MAX_LENGTH', 10**6 if matmul else 0)
    monkeypatch.setattr(ssim_module, '_CHUNK_ELEMENTS', 1 if matmul else 10**12)
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
    torch.testing.assert_close(ssim(x, y, data_range=1.0),
                               pytorch_msssim.ssim(x, y, data_range=1.0, size_average=False), atol=1e-5, rtol=0)


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
