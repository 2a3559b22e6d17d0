"""Numerical edge cases of the SSIM losses: identical maps, degenerate windows, flat maps, arguments."""
import itertools

import pytest
import torch

from mmkd.models.losses import COMPONENTS, L1MSSSIMLoss, MSSSIMLoss, SSIMLoss, minmax_normalize, ms_ssim, ssim

SHAPES = [(1, 1), (1, 2), (2, 2), (2, 7), (5, 5), (16, 16), (13, 21)]
# (scale, offset) of the maps: tiny, unit, FPN-like, large, and large offsets with unit / tiny spread
MAGNITUDES = [(1e-6, 0.0), (1.0, 0.0), (30.0, 0.0), (1e4, 0.0), (1.0, 1e4), (1e-3, 1e4)]


def _all_losses(normalize):
    subsets = [c for r in (1, 2, 3) for c in itertools.combinations(COMPONENTS, r)]
    losses = [SSIMLoss(normalize=normalize, components=c) for c in subsets]
    for multiscale in ('downsample', 'window'):
        losses += [MSSSIMLoss(normalize=normalize, multiscale=multiscale)]
        losses += [L1MSSSIMLoss(normalize=normalize, multiscale=multiscale)]
    return losses


@pytest.mark.parametrize('shape', SHAPES)
def test_identical_maps_give_a_zero_loss(shape):
    # with normalize=None and data_range (1) far below the maps' magnitude, a 2-pixel side shrinks the window
    # to one pixel, whose variances are pure rounding: the terms of x and y were rounded differently and SSIM
    # came out anywhere (-22.5 and 900.2 per channel for 1e4 * randn(1, 2, 2, 2))
    g = torch.Generator().manual_seed(0)
    for (scale, offset), normalize in itertools.product(MAGNITUDES, (None, 'minmax')):
        x = offset + scale * torch.randn(2, 3, *shape, generator=g)
        for loss in _all_losses(normalize):
            value = loss(x, x.clone()).item()
            assert abs(value) <= 1e-6, (shape, scale, offset, normalize, type(loss).__name__,
                                        getattr(loss, 'components', getattr(loss, 'multiscale', None)), value)


def test_identical_maps_reported_cases():
    g = torch.Generator().manual_seed(1)
    x = 1e4 * torch.randn(1, 2, 2, 2, generator=g)
    value = ssim(x, x.clone(), data_range=1, reduction='channel')
    torch.testing.assert_close(value, torch.ones(1, 2), atol=1e-6, rtol=0)
    # a middle level of the default 'downsample' MS-SSIM of 5x5 maps is 2x2
    x = 1e4 + torch.randn(2, 3, 5, 5, generator=g)
    torch.testing.assert_close(
        ms_ssim(x, x.clone(), data_range=1, reduction='channel'), torch.ones(2, 3), atol=1e-6, rtol=0)
    x = 1e4 + torch.randn(2, 3, 16, 16, generator=g)
    torch.testing.assert_close(ms_ssim(x, x.clone(), data_range=1), torch.ones(2), atol=1e-6, rtol=0)


def test_random_pairs_stay_within_minus_one_and_one():
    g = torch.Generator().manual_seed(0)
    subsets = [c for r in (1, 2, 3) for c in itertools.combinations(COMPONENTS, r)]
    for shape, (scale, offset), data_range in itertools.product(SHAPES, MAGNITUDES, (1.0, 1e-3)):
        x = offset + scale * torch.randn(2, 3, *shape, generator=g)
        for y in (offset + scale * torch.randn(2, 3, *shape, generator=g), -x, x + 1e-3 * scale):
            for components in subsets:
                value = ssim(x, y, data_range=data_range, components=components, reduction='channel')
                assert value.min() >= -1 and value.max() <= 1, (shape, scale, offset, components, value)
            value = ms_ssim(x, y, data_range=data_range, reduction='channel')
            assert value.min() >= 0 and value.max() <= 1, (shape, scale, offset, value)


@pytest.mark.parametrize('loss_cls', [SSIMLoss, MSSSIMLoss, L1MSSSIMLoss])
def test_flat_maps_have_a_bounded_gradient(loss_cls):
    # a map constant in every channel (bfloat16 autocast rounds 1e4 + small noise to one) left the divisor
    # of the min-max normalisation at eps = 1e-6: input gradients of 1e4 to 3e7
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 4, 16, 16, generator=g)
    noise = torch.randn(2, 4, 16, 16, generator=g)
    flat_maps = {
        'zero': torch.zeros(2, 4, 16, 16),
        'constant 3': torch.full((2, 4, 16, 16), 3.0),
        'constant -1e4': torch.full((2, 4, 16, 16), -1e4),
        '1e4 + tiny noise': 1e4 + 1e-3 * noise,
    }
    for name, pred in flat_maps.items():
        pred = pred.clone().requires_grad_()
        loss = loss_cls()(pred, target)
        (grad, ) = torch.autograd.grad(loss, pred)
        assert torch.isfinite(loss) and grad.abs().max() < 10, (name, grad.abs().max().item())
        # the value is the one of the plain formula: only the gradient is cut
        torch.testing.assert_close(minmax_normalize(pred.detach()), minmax_normalize(pred.detach(), flat_eps=0.0))
    # a map with ordinary structure keeps its gradient, whatever its offset
    pred = (1e4 + noise).requires_grad_()
    (grad, ) = torch.autograd.grad(loss_cls()(pred, target), pred)
    assert grad.abs().max() > 1e-6


@pytest.mark.parametrize('kwargs, message', [
    (dict(win_size=10), 'SSIMLoss: win_size must be an odd integer'),
    (dict(win_size=0), 'SSIMLoss: win_size'),
    (dict(win_size=3.0), 'SSIMLoss: win_size'),
    (dict(win_sigma=0), 'SSIMLoss: win_sigma'),
    (dict(data_range=-1), 'SSIMLoss: data_range'),
    (dict(K=(0.01, )), 'SSIMLoss: K'),
    (dict(loss_weight=-1), 'SSIMLoss: loss_weight'),
    (dict(normalize='zscore'), 'SSIMLoss: normalize'),
    (dict(components=('lum', )), 'SSIMLoss: components'),
])
def test_ssim_loss_arguments_are_checked_at_build(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SSIMLoss(**kwargs)


def test_multiscale_loss_arguments_are_checked_at_build():
    with pytest.raises(ValueError, match='MSSSIMLoss: win_size'):
        MSSSIMLoss(win_size=4)
    with pytest.raises(ValueError, match='MSSSIMLoss: multiscale'):
        MSSSIMLoss(multiscale='pyramid')
    with pytest.raises(ValueError, match='MSSSIMLoss: eps'):
        MSSSIMLoss(eps=-1e-6)
    with pytest.raises(ValueError, match='MSSSIMLoss: weights'):
        MSSSIMLoss(weights=[])
    with pytest.raises(ValueError, match='L1MSSSIMLoss: alpha'):
        L1MSSSIMLoss(alpha=1.5)
    with pytest.raises(ValueError, match='L1MSSSIMLoss: win_size'):
        L1MSSSIMLoss(win_size=-3)


def test_functions_reject_a_negative_window():
    x = torch.rand(1, 1, 8, 8)
    for fn in (ssim, ms_ssim):
        with pytest.raises(ValueError, match='win_size must be an odd integer >= 1'):
            fn(x, x, win_size=-1)


@pytest.mark.parametrize('loss_cls', [SSIMLoss, MSSSIMLoss, L1MSSSIMLoss])
def test_misspelt_argument_names_the_public_class(loss_cls):
    with pytest.raises(TypeError, match=rf"^{loss_cls.__name__}\.__init__\(\) .*'loss_wieght'"):
        loss_cls(loss_wieght=2.0)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_fused_backward_follows_the_bounds(dtype):
    # two flat halves at +-1e4 with data_range 1: most windows have variances of pure rounding, where the
    # bounds act (a variance below 0, 2 cov outside +-(var_x + var_y)); the fused function with its
    # hand-written backward must agree with autograd through the plain bounded formula
    from mmkd.models.losses.gaussian_filter import gaussian_kernels
    from mmkd.models.losses.ssim import COMPONENTS, _moments, _shift, _ssim_maps, _SSIMFunction, _statistics
    g = torch.Generator().manual_seed(0)
    x = torch.full((1, 2, 30, 30), 1e4, dtype=dtype)
    x[..., 15:, :] = -1e4
    x += 1e-2 * torch.randn(x.shape, generator=g, dtype=dtype) * (torch.rand(x.shape, generator=g) > 0.95)
    y = x.flip(-1) * 0.5 + 3
    var_x, var_y, cov = _moments(*_statistics(x, y, _shift(x), _shift(y), gaussian_kernels(x.shape, 11, 1.5, x)))
    bounded = (var_x < 0) | (var_y < 0) | ((2 * cov).abs() > var_x.clamp_min(0) + var_y.clamp_min(0))
    assert bounded.any()
    for cs_only in (False, True):
        a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
        luminance, cs = _ssim_maps(a, b, 1.0, 11, 1.5, (0.01, 0.03), COMPONENTS)
        ref = (cs if cs_only else luminance * cs).flatten(2).mean(-1)
        out = _SSIMFunction.apply(a, b, 1e-4, 9e-4, 11, 1.5, cs_only)
        assert out.abs().max() <= 1
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
        weight = torch.rand(ref.shape, generator=g, dtype=dtype)
        ref_grads = torch.autograd.grad((ref * weight).sum(), (a, b))
        for ours, theirs in zip(torch.autograd.grad((out * weight).sum(), (a, b)), ref_grads):
            # float32 carries the rounding of terms of size |x| / C2 = 1e7 that cancel
            tol = (0.3 if dtype == torch.float32 else 1e-3) * theirs.abs().max()
            torch.testing.assert_close(ours, theirs, atol=tol.item(), rtol=0)
