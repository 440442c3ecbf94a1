"""Preview grids of images (PNG), for the app, the CLI's live previews and the docs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from medsyn_core.files import atomic_write_bytes


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] (or uint8) -> uint8 of the same shape."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(images.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, ncol: int, padding: int = 2, pad_value: int = 0,
              scale: int = 1) -> np.ndarray:
    """Tile (N, C, H, W) images row by row into one (rows*(H+p)+p, ncol*(W+p)+p, C) uint8 array.

    ``C`` is 1 or 3; ``scale`` enlarges each pixel to ``scale x scale`` (nearest neighbour) so that
    28x28 scans stay readable on screen.
    """
    images = to_uint8(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3, got shape {images.shape}.")
    if scale > 1:
        images = images.repeat(scale, axis=2).repeat(scale, axis=3)
    n, c, h, w = images.shape
    ncol = max(1, min(ncol, n))
    nrow = (n + ncol - 1) // ncol
    grid = np.full((nrow * (h + padding) + padding, ncol * (w + padding) + padding, c), pad_value,
                   dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y:y + h, x:x + w] = images[i].transpose(1, 2, 0)
    return grid


def grid_png_bytes(grid: np.ndarray) -> bytes:
    """Encode an (H, W, C) uint8 grid as PNG bytes."""
    from PIL import Image

    mode_image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    buf = io.BytesIO()
    mode_image.save(buf, format="PNG")
    return buf.getvalue()


def save_grid_png(grid: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, C) uint8 grid to ``path`` as PNG (atomically)."""
    return atomic_write_bytes(path, grid_png_bytes(grid))
