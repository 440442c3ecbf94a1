"""Differentiable augmentation (DiffAugment; Zhao et al., NeurIPS 2020) for GANs trained on small data.

The same random augmentation family is applied to real and generated images before the discriminator
sees them, and gradients flow through it to the generator, so the discriminator cannot memorise a few
hundred training images and the generator is not taught to reproduce the augmentations.

Policy: comma-separated names from :data:`AUGMENTATIONS` (default ``"color,translation,cutout"``).
Images: (B, C, H, W) in [-1, 1]. Randomness comes from torch's global generator of the images' device,
so seeding torch (and restoring its state on resume) makes it reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def _saturation(x: torch.Tensor) -> torch.Tensor:
    if x.size(1) == 1:  # grayscale: saturation is undefined
        return x
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def _contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size (integer pixels), filling with zeros."""
    b, c, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    th = torch.randint(-sh, sh + 1, (b, 1, 1, 1), device=x.device)
    tw = torch.randint(-sw, sw + 1, (b, 1, 1, 1), device=x.device)
    padded = F.pad(x, [sw, sw, sh, sh])  # (B, C, H + 2 sh, W + 2 sw)
    rows = (torch.arange(h, device=x.device).view(1, 1, h, 1) + sh - th).expand(b, c, h, w + 2 * sw)
    x = torch.gather(padded, 2, rows)
    cols = (torch.arange(w, device=x.device).view(1, 1, 1, w) + sw - tw).expand(b, c, h, w)
    return torch.gather(x, 3, cols)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of ``ratio`` of the size per image (it may overlap the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (b, 1, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (b, 1, 1, 1), device=x.device) - cw // 2
    gy = torch.arange(h, device=x.device).view(1, 1, h, 1)
    gx = torch.arange(w, device=x.device).view(1, 1, 1, w)
    inside = (gy >= top) & (gy < top + ch) & (gx >= left) & (gx < left + cw)
    return x * (~inside).to(x.dtype)


AUGMENTATIONS = {
    "color": (_brightness, _saturation, _contrast),
    "translation": (_translation,),
    "cutout": (_cutout,),
}
DEFAULT_POLICY = "color,translation,cutout"


def parse_policy(policy: str) -> list[str]:
    """Validate a policy string; '' or 'none' means no augmentation."""
    names = [p.strip() for p in (policy or "").split(",") if p.strip() and p.strip() != "none"]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"Unknown DiffAugment step(s) {unknown}; use a comma list of "
                         f"{', '.join(AUGMENTATIONS)} (or 'none').")
    return names


def diff_augment(x: torch.Tensor, policy: str = DEFAULT_POLICY) -> torch.Tensor:
    """Apply the augmentations of ``policy`` to a batch (differentiable w.r.t. ``x``)."""
    for name in parse_policy(policy):
        for fn in AUGMENTATIONS[name]:
            x = fn(x)
    return x
