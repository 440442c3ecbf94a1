"""A StyleGAN2-style generator and discriminator in plain PyTorch (no compiled CUDA ops).

Written from Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020) and the
class-conditional variant of StyleGAN2-ADA (NeurIPS 2020):

* **Mapping network** ``z -> w``: 2nd-moment-normalised ``z`` concatenated with a normalised label
  embedding, then an MLP with a 0.01 learning-rate multiplier. A per-class running mean of ``w``
  (``w_avg``) is kept for the **truncation trick**.
* **Synthesis network**: a learned 4x4 constant, then per resolution two 3x3 **modulated convolutions
  with weight demodulation**, per-layer **noise inputs** with a learned strength, and **toRGB skip**
  connections summed across resolutions. ``w`` is broadcast to every layer (``ws``: (B, num_ws, w_dim));
  **style mixing** swaps the ``ws`` after a random cut-off for those of a second latent.
* **Discriminator**: residual blocks (``(main + skip) / sqrt(2)``), **minibatch standard deviation**,
  and **projection** class conditioning (the label embedding dotted with the last features).

All layers use the equalised learning rate (weights stored at unit variance, scaled at run time).
Simplifications against the paper, kept on purpose for readability and CPU speed: up/down-sampling is
bilinear interpolation / 2x2 average pooling instead of FIR filters, and modulation is applied to the
activations (the mathematically equivalent "non-fused" form) instead of grouped convolutions.
The discriminator has no normalisation layer at all (no BatchNorm), so DP-SGD can be added later; note
that the minibatch-stddev layer mixes samples and must be switched off (``mbstd_group=0``) for DP-SGD.

Images are (B, C, H, W) floats in [-1, 1]; labels are (B,) int64 class indices.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_RESOLUTIONS = (32, 64, 128, 256)
_LRELU_GAIN = math.sqrt(2.0)


@dataclass
class StyleGAN2Config:
    """Architecture of a StyleGAN2 generator/discriminator pair.

    Feature maps at resolution ``r`` have ``min(channel_base // r, channel_max)`` channels.
    ``n_classes=0`` builds an unconditional model.
    """

    resolution: int = 32
    img_channels: int = 1
    n_classes: int = 0
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    channel_base: int = 4096
    channel_max: int = 256
    mbstd_group: int = 4  # 0 switches minibatch stddev off (needed for DP-SGD)

    def __post_init__(self) -> None:
        if self.resolution not in SUPPORTED_RESOLUTIONS:
            raise ValueError(
                f"Resolution {self.resolution} is not supported; use one of {SUPPORTED_RESOLUTIONS} "
                "(28x28 MedMNIST images are padded to 32)."
            )
        if self.img_channels not in (1, 3):
            raise ValueError(f"img_channels must be 1 (grayscale) or 3 (RGB), not {self.img_channels}.")
        if self.n_classes < 0 or self.mapping_layers < 1 or self.z_dim < 1 or self.w_dim < 1:
            raise ValueError("n_classes must be >= 0 and z_dim, w_dim, mapping_layers >= 1.")
        if self.channels_at(self.resolution) < 1:
            raise ValueError(f"channel_base {self.channel_base} is too small for {self.resolution} px.")

    def channels_at(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def block_resolutions(self) -> list[int]:
        """[4, 8, ..., resolution]."""
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        """Number of ``w`` vectors the synthesis network consumes (one per modulated layer pair)."""
        return 2 * int(math.log2(self.resolution)) - 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StyleGAN2Config:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --- equalised-learning-rate layers ----------------------------------------------------------------------
class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate; optional leaky ReLU (gain sqrt 2)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_multiplier: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.bias_gain if self.bias is not None else None
        x = F.linear(x, self.weight * self.weight_gain, bias)
        return F.leaky_relu(x, 0.2) * _LRELU_GAIN if self.activation else x


class EqualConv2d(nn.Module):
    """Convolution (same padding) with equalised learning rate, optional 2x average-pool downsampling
    before the convolution and leaky ReLU after it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = False, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activation = activation
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)
        return F.leaky_relu(x, 0.2) * _LRELU_GAIN if self.activation else x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row of (B, D) to unit root-mean-square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# --- generator ----------------------------------------------------------------------------------------------
class MappingNetwork(nn.Module):
    """``(z, labels) -> w``: (B, z_dim), (B,) -> (B, w_dim). Keeps ``w_avg`` (n_classes or 1, w_dim)."""

    def __init__(self, cfg: StyleGAN2Config, lr_multiplier: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.n_classes = cfg.n_classes
        self.w_avg_beta = w_avg_beta
        self.embed = EqualLinear(cfg.n_classes, cfg.w_dim) if cfg.n_classes else None
        in_dim = cfg.z_dim + (cfg.w_dim if cfg.n_classes else 0)
        dims = [in_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.Sequential(*[
            EqualLinear(dims[i], dims[i + 1], lr_multiplier=lr_multiplier, activation=True)
            for i in range(cfg.mapping_layers)
        ])
        self.register_buffer("w_avg", torch.zeros(max(cfg.n_classes, 1), cfg.w_dim))

    def _class_rows(self, labels: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        if self.n_classes == 0:
            return torch.zeros(batch, dtype=torch.long, device=device)
        if labels is None:
            raise ValueError("This generator is class-conditional: pass a label for every image.")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(f"Labels must lie in 0..{self.n_classes - 1}.")
        return labels.long()

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation: float = 1.0,
                update_w_avg: bool = False) -> torch.Tensor:
        x = normalize_2nd_moment(z.float())
        rows = self._class_rows(labels, z.shape[0], z.device)
        if self.embed is not None:
            onehot = F.one_hot(rows, self.n_classes).to(x.dtype)
            x = torch.cat([x, normalize_2nd_moment(self.embed(onehot))], dim=1)
        w = self.layers(x)
        if update_w_avg:
            with torch.no_grad():
                w32 = w.detach().float()
                for k in rows.unique():
                    batch_mean = w32[rows == k].mean(dim=0)
                    self.w_avg[k].copy_(batch_mean.lerp(self.w_avg[k], self.w_avg_beta))
        if truncation != 1.0:
            avg = self.w_avg[rows].to(w.dtype)
            w = avg + truncation * (w - avg)
        return w


class ModulatedConv2d(nn.Module):
    """3x3 (or 1x1) convolution whose input channels are scaled by a style from ``w``, with weight
    demodulation (each output channel renormalised to unit expected variance). Optional 2x upsampling
    (bilinear) before the convolution. x: (B, Cin, H, W), w: (B, w_dim) -> (B, Cout, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.up = up

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (B, Cin)
        weight = self.weight * self.weight_gain  # (Cout, Cin, k, k)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = x * styles[:, :, None, None].to(x.dtype)
        x = F.conv2d(x, weight.to(x.dtype), padding=weight.shape[-1] // 2)
        if self.demodulate:
            # sigma_j = sqrt(sum_{i,k} (s_i * w_ijk)^2) per sample and output channel: (B, Cout)
            demod = (styles.float().square() @ weight.float().square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
            x = x * demod[:, :, None, None].to(x.dtype)
        return x


class StyledLayer(nn.Module):
    """Modulated conv + per-pixel noise (learned strength) + bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.resolution = resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device,
                                dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength.to(x.dtype)
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', not {noise_mode!r}.")
        x = x + self.bias[None, :, None, None].to(x.dtype)
        return F.leaky_relu(x, 0.2) * _LRELU_GAIN


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation: features -> image residual (B, img_channels, H, W)."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None].to(x.dtype)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network (4x4 starts from a learned constant)."""

    def __init__(self, cfg: StyleGAN2Config, res: int):
        super().__init__()
        out_ch = cfg.channels_at(res)
        self.res = res
        if res == 4:
            self.const = nn.Parameter(torch.randn(out_ch, 4, 4))
            self.conv0 = None
        else:
            self.const = None
            self.conv0 = StyledLayer(cfg.channels_at(res // 2), out_ch, cfg.w_dim, res, up=True)
        self.conv1 = StyledLayer(out_ch, out_ch, cfg.w_dim, res)
        self.torgb = ToRGB(out_ch, cfg.img_channels, cfg.w_dim)
        self.num_conv = 1 if res == 4 else 2

    def forward(self, x, img, ws: torch.Tensor, noise_mode: str):
        """ws: (B, num_conv + 1, w_dim) — the last one is for toRGB (shared with the next block)."""
        if self.const is not None:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else F.interpolate(img, scale_factor=2, mode="bilinear",
                                                  align_corners=False) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """``ws`` (B, num_ws, w_dim) -> image (B, img_channels, resolution, resolution)."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.blocks = nn.ModuleList([SynthesisBlock(cfg, r) for r in cfg.block_resolutions])

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = img = None
        index = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, index:index + block.num_conv + 1], noise_mode)
            index += block.num_conv
        return img


class StyleGAN2Generator(nn.Module):
    """``G(z, labels) -> images``: (B, z_dim), (B,) int64 -> (B, img_channels, R, R) in about [-1, 1]."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.n_classes = cfg.n_classes
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation: float = 1.0,
                mixing_prob: float = 0.0, noise_mode: str = "random",
                update_w_avg: bool = False) -> torch.Tensor:
        w = self.mapping(z, labels, truncation=truncation, update_w_avg=update_w_avg)
        ws = w[:, None, :].repeat(1, self.cfg.num_ws, 1)
        if mixing_prob > 0:
            ws = self._style_mix(ws, labels, mixing_prob, truncation)
        return self.synthesis(ws, noise_mode=noise_mode)

    def _style_mix(self, ws, labels, mixing_prob: float, truncation: float) -> torch.Tensor:
        """With probability ``mixing_prob`` (for the whole batch), layers from a random cut-off on take
        the ``w`` of a second latent with the same labels (a regulariser from the StyleGAN paper)."""
        num_ws = ws.shape[1]
        cutoff = int(torch.randint(1, num_ws, ()).item())
        if torch.rand(()).item() >= mixing_prob:
            cutoff = num_ws
        z2 = torch.randn(ws.shape[0], self.z_dim, device=ws.device)
        w2 = self.mapping(z2, labels, truncation=truncation)
        ws = ws.clone()
        ws[:, cutoff:] = w2[:, None, :].to(ws.dtype)
        return ws


# --- discriminator ------------------------------------------------------------------------------------------
class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second halves the resolution) plus a 1x1 downsampled skip."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * (1 / math.sqrt(2))


class MinibatchStdDev(nn.Module):
    """Append the mean over features of the per-group standard deviation as one extra channel."""

    def __init__(self, group_size: int):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        while b % g:  # largest group size <= group_size that divides the batch
            g -= 1
        y = x.float().reshape(g, -1, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # (B/g, C, H, W)
        y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # (B, 1, H, W)
        return torch.cat([x, y.to(x.dtype)], dim=1)


class StyleGAN2Discriminator(nn.Module):
    """``D(images, labels) -> logits``: (B, C, R, R) in [-1, 1], (B,) -> (B,) real-vs-fake scores."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        self.n_classes = cfg.n_classes
        res = cfg.resolution
        self.from_rgb = EqualConv2d(cfg.img_channels, cfg.channels_at(res), 1, activation=True)
        self.blocks = nn.Sequential(*[
            DiscriminatorBlock(cfg.channels_at(r), cfg.channels_at(r // 2))
            for r in reversed(cfg.block_resolutions[1:])
        ])
        ch = cfg.channels_at(4)
        self.mbstd = MinibatchStdDev(cfg.mbstd_group) if cfg.mbstd_group > 0 else None
        self.conv = EqualConv2d(ch + (1 if self.mbstd else 0), ch, 3, activation=True)
        self.fc = EqualLinear(ch * 16, ch, activation=True)
        self.out = EqualLinear(ch, 1)
        self.embed = EqualLinear(cfg.n_classes, ch, bias=False) if cfg.n_classes else None

    def forward(self, img: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.blocks(self.from_rgb(img))
        if self.mbstd is not None:
            x = self.mbstd(x)
        h = self.fc(self.conv(x).flatten(1))  # (B, ch)
        logits = self.out(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("This discriminator is class-conditional: pass the labels.")
            e = self.embed(F.one_hot(labels.long(), self.n_classes).to(h.dtype))
            logits = logits + (e * h).sum(dim=1) / math.sqrt(h.shape[1])
        return logits
