"""The model-facing image pipeline, built from MONAI transforms.

Images go in channel-first, one sample at a time: ``(C, H, W)`` (C = 1 grey or 3 RGB). The pipeline
scales intensities to ``[0, 1]`` (a display window first for CT, see :mod:`medsyn_imaging.windowing`),
resizes to ``size x size`` and, for training, augments (random flip, small rotation/zoom, contrast),
then maps to the model range (``[-1, 1]`` by default, the usual GAN output range).
MONAI and torch are imported inside the functions so that importing this module is cheap.
"""

from __future__ import annotations

import numpy as np

from medsyn_imaging.volume import Volume
from medsyn_imaging.windowing import AUTO, apply_window, resolve_window


def model_transforms(size: int, augment: bool = False, output_range: tuple[float, float] = (-1.0, 1.0),
                     seed: int | None = None):
    """A ``monai.transforms.Compose`` mapping a (C, H, W) array in [0, 1] to a (C, size, size)
    float32 tensor in ``output_range``; random transforms are seeded by ``seed`` when given."""
    from monai import transforms as mt

    if size < 4:
        raise ValueError(f"size must be at least 4 pixels, got {size}.")
    steps = [
        mt.EnsureType(data_type="tensor", dtype=np.float32),
        mt.Resize(spatial_size=(size, size), mode="area"),
    ]
    if augment:
        steps += [
            mt.RandFlip(prob=0.5, spatial_axis=1),
            mt.RandAffine(prob=0.5, rotate_range=(np.pi / 36,), scale_range=(0.05, 0.05),
                          padding_mode="border", mode="bilinear"),
            mt.RandAdjustContrast(prob=0.3, gamma=(0.8, 1.25)),
        ]
    steps.append(mt.ScaleIntensityRange(a_min=0.0, a_max=1.0, b_min=output_range[0], b_max=output_range[1],
                                        clip=True))
    pipeline = mt.Compose(steps)
    if seed is not None:
        pipeline.set_random_state(seed=seed)
    return pipeline


def volume_to_unit_range(volume: Volume, window: str = AUTO) -> np.ndarray:
    """Slices of ``volume`` as (N, C, H, W) float32 in [0, 1]; 4D volumes use all time points.

    Grey volumes are windowed (``auto`` = 1st-99th percentile of the whole volume, or a preset name);
    RGB uint8 is divided by 255.
    """
    pixels = volume.pixels
    if volume.is_4d:
        pixels = pixels.reshape((-1,) + pixels.shape[2:])
    if volume.rgb:
        scale = 255.0 if pixels.dtype == np.uint8 else float(max(pixels.max(), 1))
        return np.moveaxis(pixels.astype(np.float32) / scale, -1, 1)
    center, width = resolve_window(volume, window)
    return (apply_window(pixels, center, width).astype(np.float32) / 255.0)[:, None]


def volume_to_model_input(volume: Volume, size: int, window: str = AUTO, augment: bool = False,
                          seed: int | None = None):
    """A torch tensor (N, C, size, size) float32 in [-1, 1] from the slices of ``volume``."""
    import torch

    unit = volume_to_unit_range(volume, window)
    pipeline = model_transforms(size, augment=augment, seed=seed)
    outputs = [pipeline(sample) for sample in unit]
    # MONAI returns MetaTensor; hand the model plain tensors.
    return torch.stack([o.as_tensor() if hasattr(o, "as_tensor") else torch.as_tensor(o) for o in outputs])
