"""DCGAN baseline built from MONAI's ``Generator`` and ``Discriminator``, class-conditional by
concatenation, with the same call signatures as the StyleGAN2 pair so the same training loop drives it.

* Generator: ``[z, one_hot(label)]`` -> MONAI ``Generator`` (transposed-conv upsampling from 4x4 with
  residual units, instance norm, PReLU) -> ``tanh``. "Truncation" here scales ``z`` by ``truncation``
  (the usual latent-shrinking stand-in; DCGAN has no ``w`` space).
* Discriminator: the image with ``K`` constant one-hot label planes appended -> MONAI ``Discriminator``
  (strided residual units, instance norm, no sigmoid: it returns logits). No BatchNorm anywhere.

Images are (B, C, R, R) in [-1, 1]; labels (B,) int64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from medsyn_imaging.networks.stylegan2 import SUPPORTED_RESOLUTIONS


@dataclass
class DCGANConfig:
    """Architecture of the DCGAN baseline; ``base_channels`` is the width at full resolution."""

    resolution: int = 32
    img_channels: int = 1
    n_classes: int = 0
    z_dim: int = 100
    base_channels: int = 32
    max_channels: int = 256

    def __post_init__(self) -> None:
        if self.resolution not in SUPPORTED_RESOLUTIONS:
            raise ValueError(f"Resolution {self.resolution} is not supported; use {SUPPORTED_RESOLUTIONS}.")
        if self.img_channels not in (1, 3):
            raise ValueError(f"img_channels must be 1 or 3, not {self.img_channels}.")

    @property
    def n_scales(self) -> int:
        """Number of 2x steps between 4x4 and the resolution."""
        return int(math.log2(self.resolution)) - 2

    def width(self, step_from_full: int) -> int:
        return min(self.base_channels * 2**step_from_full, self.max_channels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DCGANConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class DCGANGenerator(nn.Module):
    """``G(z, labels) -> images``: (B, z_dim), (B,) -> (B, C, R, R) in [-1, 1]."""

    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        from monai.networks.nets import Generator

        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.n_classes = cfg.n_classes
        n = cfg.n_scales
        # widths from 4x4 upwards: widest first, the last layer outputs the image channels
        channels = [cfg.width(n - 1 - i) for i in range(1, n)] + [cfg.img_channels]
        self.net = Generator(latent_shape=(cfg.z_dim + cfg.n_classes,),
                             start_shape=(cfg.width(n - 1), 4, 4), channels=channels, strides=[2] * n)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation: float = 1.0,
                mixing_prob: float = 0.0, noise_mode: str = "random",
                update_w_avg: bool = False) -> torch.Tensor:
        """``mixing_prob``, ``noise_mode`` and ``update_w_avg`` exist for interface parity and are
        ignored: DCGAN has no style vectors or noise inputs."""
        x = z * truncation
        if self.n_classes:
            if labels is None:
                raise ValueError("This generator is class-conditional: pass a label for every image.")
            x = torch.cat([x, F.one_hot(labels.long(), self.n_classes).to(x.dtype)], dim=1)
        return torch.tanh(self.net(x))


class DCGANDiscriminator(nn.Module):
    """``D(images, labels) -> logits``: (B, C, R, R), (B,) -> (B,)."""

    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        from monai.networks.nets import Discriminator

        self.cfg = cfg
        self.n_classes = cfg.n_classes
        n = cfg.n_scales
        self.net = Discriminator(in_shape=(cfg.img_channels + cfg.n_classes, cfg.resolution, cfg.resolution),
                                 channels=[cfg.width(i) for i in range(n)], strides=[2] * n,
                                 dropout=None, last_act=None)

    def forward(self, img: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_classes:
            if labels is None:
                raise ValueError("This discriminator is class-conditional: pass the labels.")
            planes = F.one_hot(labels.long(), self.n_classes).to(img.dtype)[:, :, None, None]
            img = torch.cat([img, planes.expand(-1, -1, img.shape[2], img.shape[3])], dim=1)
        return self.net(img).reshape(-1)
