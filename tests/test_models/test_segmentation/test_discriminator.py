"""OutputSpaceDiscriminator: the fully convolutional domain classifier of softmax maps."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmkd.models.segmentation import OutputSpaceDiscriminator
from mmkd.registry import SEG_MODELS
from mmkd.utils.build import build_in_scope


@pytest.mark.parametrize('num_convs, base_channels, size, out', [(2, 4, (16, 32), (4, 8)), (3, 8, (32, 64), (4, 8)),
                                                                 (5, 64, (64, 128), (2, 4)), (4, 16, (40, 72), (2, 4))])
def test_layers_and_output_shape(num_convs, base_channels, size, out):
    disc = OutputSpaceDiscriminator(5, base_channels=base_channels, num_convs=num_convs)
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    # 5 -> base, 2 base, ..., base 2^(n-2) -> 1, each kernel 4, stride 2, padding 1
    expected = [5] + [base_channels * 2**i for i in range(num_convs - 1)] + [1]
    assert [(c.in_channels, c.out_channels) for c in convs] == list(zip(expected[:-1], expected[1:]))
    assert {(c.kernel_size, c.stride, c.padding) for c in convs} == {((4, 4), (2, 2), (1, 1))}
    y = disc(torch.rand(2, 5, *size).softmax(1))
    assert y.shape == (2, 1, *out)  # floor(x / 2) per convolution for even sizes


@pytest.mark.parametrize('slope', [0.2, 0.05])
def test_forward_is_convolutions_with_leaky_relu(slope):
    torch.manual_seed(0)
    disc = build_in_scope(
        dict(type='OutputSpaceDiscriminator', in_channels=3, base_channels=4, num_convs=3, negative_slope=slope),
        SEG_MODELS)
    disc.init_weights()
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert 0.005 < convs[0].weight.std().item() < 0.015  # Normal(0, 0.01) init
    for conv in convs:  # weights large enough for negative activations to matter
        nn.init.normal_(conv.weight, std=0.5)
    x = torch.rand(2, 3, 16, 16).double()
    disc.double()
    ref = x
    for i, conv in enumerate(convs):
        ref = F.conv2d(ref, conv.weight, conv.bias, stride=2, padding=1)
        if i < len(convs) - 1:
            assert (ref < 0).any()
            ref = torch.where(ref >= 0, ref, slope * ref)
    torch.testing.assert_close(disc(x), ref, rtol=1e-12, atol=1e-12)
    assert [m.negative_slope for m in disc.modules() if isinstance(m, nn.LeakyReLU)] == [slope, slope]


@pytest.mark.parametrize('shape', [(2, 4, 16, 16), (3, 16, 16), (1, 1, 3, 16, 16)])
def test_wrong_input_shape_is_refused(shape):
    disc = OutputSpaceDiscriminator(3, base_channels=4, num_convs=2)
    with pytest.raises(ValueError, match=r'reads \(N, 3, H, W\) class probabilities, got a tensor of shape'):
        disc(torch.zeros(shape))


def test_too_few_convolutions_are_refused():
    with pytest.raises(ValueError, match='num_convs >= 2, got 1'):
        OutputSpaceDiscriminator(3, num_convs=1)
