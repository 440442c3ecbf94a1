"""Memorisation check: is any synthetic image a near-copy of a real training image?

For each synthetic image the ``k`` nearest real training images in feature space are found, and the
pixel SSIM (scikit-image) with each is measured; the highest SSIM is that image's closeness. Images at
or above ``ssim_threshold`` are flagged as near-copies. As a reference, the same is measured for the real
test split: how close do *other* real patients come to the training images? A generator whose samples
sit much closer to training images than new patients do is copying.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_SSIM_THRESHOLD = 0.95


@dataclass
class Closeness:
    """Per-image nearest real training image: index (into the training split), feature distance, SSIM."""

    nearest_index: np.ndarray  # (M,) int, index of the training image with the highest SSIM
    feature_distance: np.ndarray  # (M,) float, Euclidean distance in feature space to that image
    ssim: np.ndarray  # (M,) float in [-1, 1]; 1 = pixel-identical


@dataclass
class MemorisationResult:
    synthetic: Closeness
    real_reference: Closeness | None  # real test split vs training split (None when not measured)
    ssim_threshold: float

    @property
    def flagged(self) -> np.ndarray:
        """Indices of synthetic images that are near-copies (SSIM >= threshold), closest first."""
        idx = np.flatnonzero(self.synthetic.ssim >= self.ssim_threshold)
        return idx[np.argsort(-self.synthetic.ssim[idx])]

    def summary(self) -> dict[str, float | int | None]:
        s = self.synthetic.ssim
        ref = self.real_reference.ssim if self.real_reference is not None else None
        return {
            "n_synthetic": int(len(s)), "n_flagged": int(len(self.flagged)),
            "share_flagged": float(len(self.flagged) / max(len(s), 1)),
            "ssim_threshold": self.ssim_threshold,
            "max_ssim": float(s.max()) if len(s) else None,
            "median_ssim": float(np.median(s)) if len(s) else None,
            "reference_max_ssim": float(ref.max()) if ref is not None and len(ref) else None,
            "reference_median_ssim": float(np.median(ref)) if ref is not None and len(ref) else None,
            "reference_share_above_threshold": (float(np.mean(ref >= self.ssim_threshold))
                                                if ref is not None and len(ref) else None),
        }


def pixel_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 images (C, H, W); the window shrinks for images under 7 px."""
    from skimage.metrics import structural_similarity

    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of the same shape; got {a.shape} and {b.shape}.")
    side = min(a.shape[1:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"Images of {a.shape[1]}x{a.shape[2]} pixels are too small for SSIM (need 3x3).")
    if a.shape[0] == 1:
        return float(structural_similarity(a[0], b[0], data_range=255, win_size=win))
    return float(structural_similarity(a, b, data_range=255, win_size=win, channel_axis=0))


def closest_training_images(images: np.ndarray, features: np.ndarray, train_images: np.ndarray,
                            train_features: np.ndarray, k: int = 5, batch: int = 512) -> Closeness:
    """For each image (M, C, H, W) with features (M, F): the closest of its k feature-space neighbours
    among ``train_images`` (N, C, H, W) / ``train_features`` (N, F), judged by pixel SSIM."""
    import torch

    k = min(k, len(train_features))
    train_t = torch.from_numpy(np.asarray(train_features, dtype=np.float64))
    best_idx = np.zeros(len(images), dtype=np.int64)
    best_dist = np.zeros(len(images))
    best_ssim = np.full(len(images), -1.0)
    for start in range(0, len(images), batch):
        q = torch.from_numpy(np.asarray(features[start:start + batch], dtype=np.float64))
        dist, idx = torch.cdist(q, train_t).topk(k, dim=1, largest=False)
        for row in range(len(q)):
            i = start + row
            for d, j in zip(dist[row].tolist(), idx[row].tolist(), strict=True):
                s = pixel_ssim(images[i], train_images[j])
                if s > best_ssim[i]:
                    best_idx[i], best_dist[i], best_ssim[i] = j, d, s
    return Closeness(best_idx, best_dist, best_ssim)


def memorisation_check(synthetic_images: np.ndarray, synthetic_features: np.ndarray,
                       train_images: np.ndarray, train_features: np.ndarray,
                       reference_images: np.ndarray | None = None,
                       reference_features: np.ndarray | None = None,
                       ssim_threshold: float = DEFAULT_SSIM_THRESHOLD, k: int = 5) -> MemorisationResult:
    """Find each synthetic image's closest real training image and flag near-copies (see module doc)."""
    if not 0 < ssim_threshold <= 1:
        raise ValueError(f"The SSIM threshold must be in (0, 1]; got {ssim_threshold}.")
    syn = closest_training_images(synthetic_images, synthetic_features, train_images, train_features, k)
    ref = None
    if reference_images is not None and reference_features is not None:
        ref = closest_training_images(reference_images, reference_features, train_images, train_features, k)
    return MemorisationResult(syn, ref, ssim_threshold)


def closest_pairs_figure(result: MemorisationResult, synthetic_images: np.ndarray, train_images: np.ndarray,
                         n_pairs: int = 8):
    """Matplotlib figure: the ``n_pairs`` synthetic images closest to a training image, each beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-result.synthetic.ssim)[:n_pairs]
    fig, axes = plt.subplots(2, max(len(order), 1), figsize=(1.5 * max(len(order), 1), 3.4), squeeze=False)
    for col, i in enumerate(order):
        j = int(result.synthetic.nearest_index[i])
        for row, (img, title) in enumerate(((synthetic_images[i], f"synthetic #{i}"),
                                            (train_images[j], f"SSIM {result.synthetic.ssim[i]:.3f}"))):
            ax = axes[row, col]
            ax.imshow(_display(img), cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=255)
            flagged = row == 1 and result.synthetic.ssim[i] >= result.ssim_threshold
            ax.set_title(title, fontsize=7, color="#b42318" if flagged else "black")
            ax.axis("off")
    for ax in axes.flat[2 * len(order):]:
        ax.axis("off")
    axes[0, 0].text(-0.15, 0.5, "synthetic", transform=axes[0, 0].transAxes, rotation=90, va="center",
                    ha="right")
    axes[1, 0].text(-0.15, 0.5, "nearest real", transform=axes[1, 0].transAxes, rotation=90, va="center",
                    ha="right")
    fig.tight_layout()
    return fig


def _display(img: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> what imshow wants: (H, W) for grey, (H, W, 3) for colour."""
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
