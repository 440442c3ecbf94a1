"""ResNet9: the residual 9-layer network of the DAWNBench CIFAR-10 record (Myrtle.ai, D. Page 2018).

Layout (``w`` = width, 64 in the original): prep conv ``w`` -> layer1 conv ``2w`` + max-pool + residual
block -> layer2 conv ``4w`` + max-pool -> layer3 conv ``8w`` + max-pool + residual block -> global max-pool
-> linear -> logits scaled by 0.125. The final pooling is adaptive, so any input of at least 8x8 pixels
works (28 px MedMNIST, 32, 64 …). 1 or 3 input channels, any number of classes.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU, then an optional 2x2 max-pool (halves H and W)."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """``x + f(x)`` with ``f`` two conv-bn-relu blocks of the same width."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """ResNet9 classifier.

    ``forward(x)``: x (N, in_channels, H, W) float, normalised -> logits (N, n_classes).
    ``features(x)``: the penultimate layer, (N, 8 * width) after global max-pooling; used as the
    medical-domain feature space for FID/KID, precision/recall and the memorisation check.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 64,
                 logit_scale: float = 0.125):
        super().__init__()
        if in_channels < 1 or n_classes < 2 or width < 1:
            raise ValueError(
                f"ResNet9 needs in_channels >= 1, n_classes >= 2 and width >= 1 "
                f"(got {in_channels}, {n_classes}, {width})."
            )
        self.in_channels, self.n_classes, self.width = in_channels, n_classes, width
        self.logit_scale = logit_scale
        self.body = nn.Sequential(
            conv_bn(in_channels, width),
            conv_bn(width, 2 * width, pool=True),
            Residual(2 * width),
            conv_bn(2 * width, 4 * width, pool=True),
            conv_bn(4 * width, 8 * width, pool=True),
            Residual(8 * width),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(8 * width, n_classes, bias=False)

    @property
    def num_features(self) -> int:
        """Length of the feature vector returned by :meth:`features`."""
        return 8 * self.width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResNet9 expects images shaped (N, {self.in_channels}, H, W); got {tuple(x.shape)}."
            )
        if min(x.shape[-2:]) < 8:
            raise ValueError(f"ResNet9 needs images of at least 8x8 pixels; got {tuple(x.shape[-2:])}.")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.logit_scale
