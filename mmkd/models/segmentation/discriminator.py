"""The output-space discriminator of adversarial domain adaptation for segmentation."""
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmkd.registry import SEG_MODELS


@SEG_MODELS.register_module()
class OutputSpaceDiscriminator(BaseModule):
    """A fully convolutional domain classifier of softmax segmentation maps (Tsai et al., "Learning to Adapt
    Structured Output Space for Semantic Segmentation", CVPR 2018; the discriminator of Kothandaraman et al.,
    "Domain Adaptive Knowledge Distillation for Driving Scene Semantic Segmentation", WACV 2021 workshops).

    ``num_convs`` convolutions of kernel 4, stride 2 and padding 1 with ``base_channels * 2**i`` channels, each
    but the last followed by LeakyReLU(``negative_slope``); the last gives one logit per location of a map
    ``2**num_convs`` times smaller than the input (the domain of each patch).

    Args:
        in_channels: the number of classes of the maps it reads.
        base_channels: channels of the first convolution (64 in the paper).
        num_convs: number of convolutions (5 in the paper: 64, 128, 256, 512, 1 channels).
        negative_slope: slope of the LeakyReLU (0.2).
    """

    def __init__(self,
                 in_channels: int,
                 base_channels: int = 64,
                 num_convs: int = 5,
                 negative_slope: float = 0.2,
                 init_cfg=dict(type='Normal', layer='Conv2d', std=0.01)):
        super().__init__(init_cfg)
        if num_convs < 2:
            raise ValueError(f'OutputSpaceDiscriminator needs num_convs >= 2, got {num_convs}')
        layers = []
        channels = in_channels
        for i in range(num_convs - 1):
            layers += [nn.Conv2d(channels, base_channels * 2**i, 4, 2, 1), nn.LeakyReLU(negative_slope, True)]
            channels = base_channels * 2**i
        layers.append(nn.Conv2d(channels, 1, 4, 2, 1))
        self.layers = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, probs: Tensor) -> Tensor:
        """(N, 1, H', W') domain logits of (N, C, H, W) class probabilities."""
        if probs.dim() != 4 or probs.shape[1] != self.in_channels:
            raise ValueError(f'OutputSpaceDiscriminator reads (N, {self.in_channels}, H, W) class probabilities, '
                             f'got a tensor of shape {tuple(probs.shape)}')
        return self.layers(probs)
