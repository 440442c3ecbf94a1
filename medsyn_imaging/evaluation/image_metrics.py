"""Distribution metrics between real and synthetic images: FID, KID and precision/recall/density/coverage.

FID and KID come from torchmetrics with a pluggable feature extractor (see
:mod:`medsyn_imaging.evaluation.features`).
PRDC follows Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models" (k-NN
balls around real and synthetic feature vectors).

Every score is reported beside the **real-vs-real floor**: the same metric between the real training
split (the reference) and the real test split, with the synthetic set subsampled to the test split's
size so that both numbers carry the same small-sample bias. A synthetic score near the floor is as good
as a second sample of real patients.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from medsyn_imaging.evaluation.features import extract_features, extractor_device

#: Largest KID subset (torchmetrics' default); smaller sets use their own size.
KID_MAX_SUBSET = 1000


@dataclass
class DistributionScores:
    """FID/KID/PRDC of one image set against the real reference set (units: feature-space distances)."""

    fid: float
    kid_mean: float
    kid_std: float
    kid_subset_size: int
    precision: float
    recall: float
    density: float
    coverage: float
    n_reference: int
    n_compared: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def kid_subset_size(n_real: int, n_fake: int) -> int:
    """KID subset size adapted to small sets: at most 1000, at most the smaller set's size."""
    return int(max(2, min(KID_MAX_SUBSET, n_real, n_fake)))


def fid_kid(extractor: nn.Module, real: np.ndarray, fake: np.ndarray, kid_subsets: int = 100,
            batch_size: int = 256, seed: int = 0) -> tuple[float, float, float, int]:
    """FID and KID (mean, std) of uint8 images ``real`` vs ``fake`` (N, C, H, W) via torchmetrics.

    Returns (fid, kid_mean, kid_std, kid_subset_size).
    """
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"FID/KID need at least 2 images per set (got {len(real)} real, "
                         f"{len(fake)} synthetic).")
    device = extractor_device(extractor)
    subset = kid_subset_size(len(real), len(fake))
    fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False).to(device)
    with warnings.catch_warnings():  # "KID keeps all features in memory": intended, sets here are small
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=extractor, subsets=kid_subsets, subset_size=subset,
                                      reset_real_features=False).to(device)
    for is_real, images in ((True, real), (False, fake)):
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
            fid.update(x, real=is_real)
            kid.update(x, real=is_real)
    torch.manual_seed(seed)  # KID draws random subsets
    kid_mean, kid_std = kid.compute()
    return float(fid.compute()), float(kid_mean), float(kid_std), subset


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)), float64."""
    import torch

    return torch.cdist(torch.from_numpy(a).double(), torch.from_numpy(b).double()).numpy()


def _knn_radius(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    d = _pairwise(features, features)
    return np.partition(d, k, axis=1)[:, k]  # column 0 is the point itself (distance 0)


def prdc(real_features: np.ndarray, fake_features: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) of feature sets (N, F) and (M, F).

    * precision: share of synthetic points inside some real point's k-NN ball (realism);
    * recall: share of real points inside some synthetic point's k-NN ball (diversity);
    * density: mean number of real k-NN balls holding a synthetic point, divided by k (1 ~ real-like);
    * coverage: share of real points whose k-NN ball holds at least one synthetic point.
    """
    real_features = np.asarray(real_features, dtype=np.float64)
    fake_features = np.asarray(fake_features, dtype=np.float64)
    if min(len(real_features), len(fake_features)) <= k:
        raise ValueError(
            f"PRDC with k={k} needs more than {k} points per set (got {len(real_features)} real, "
            f"{len(fake_features)} synthetic)."
        )
    real_radius = _knn_radius(real_features, k)
    fake_radius = _knn_radius(fake_features, k)
    d = _pairwise(real_features, fake_features)  # (N real, M fake)
    inside_real = d <= real_radius[:, None]  # fake j inside real i's ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d <= fake_radius[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum() / (k * len(fake_features))),
        "coverage": float((d.min(axis=1) <= real_radius).mean()),
    }


def distribution_scores(extractor: nn.Module, reference: np.ndarray, compared: np.ndarray,
                        reference_features: np.ndarray | None = None,
                        compared_features: np.ndarray | None = None, k: int = 5,
                        seed: int = 0) -> DistributionScores:
    """All distribution metrics of uint8 images ``compared`` against ``reference`` (N, C, H, W)."""
    fid, kid_m, kid_s, subset = fid_kid(extractor, reference, compared, seed=seed)
    if reference_features is None:
        reference_features = extract_features(extractor, reference)
    if compared_features is None:
        compared_features = extract_features(extractor, compared)
    p = prdc(reference_features, compared_features, k=k)
    return DistributionScores(fid, kid_m, kid_s, subset, p["precision"], p["recall"], p["density"],
                              p["coverage"], len(reference), len(compared))


def synthetic_vs_floor(extractor: nn.Module, real_train: np.ndarray, real_test: np.ndarray,
                       synthetic: np.ndarray, k: int = 5, seed: int = 0) -> dict[str, DistributionScores]:
    """Scores of the synthetic images and of the real test split, both against the real training split.

    The synthetic set is subsampled (seeded) to the test split's size when larger, so the two numbers
    are directly comparable. Returns ``{"synthetic": …, "real_floor": …}``.
    """
    rng = np.random.default_rng(seed)
    if len(synthetic) > len(real_test):
        synthetic = synthetic[np.sort(rng.choice(len(synthetic), len(real_test), replace=False))]
    ref_features = extract_features(extractor, real_train)
    return {
        "synthetic": distribution_scores(extractor, real_train, synthetic, ref_features, k=k, seed=seed),
        "real_floor": distribution_scores(extractor, real_train, real_test, ref_features, k=k, seed=seed),
    }
