"""Fidelity and memorisation of synthetic volumes: FID on three planes, FRD, nearest real volume in 3D.

All numbers stand beside their **real-vs-real floor**. The real volumes are split (seeded) into a
*reference* half and a *held-out* half; each metric is computed for reference vs synthetic and for
reference vs held-out (the synthetic set subsampled to the held-out size), so both carry the same
small-sample bias. A synthetic score near the floor is as good as a second sample of real patients.

* **FID on three planes** (the MAISI protocol, Guo et al. 2024): 2D slices of every volume along the
  axial, coronal and sagittal planes, features from a 2D network, one FID per plane and their mean.
  MAISI uses a RadImageNet ResNet-50 (downloaded weights); MedSyn never downloads, so the feature network
  is a ResNet9 trained here on the reference slices with a label-free pretext task: which plane, and which
  third of the volume along it, a slice comes from (9 classes). Its numbers compare runs that use the same
  extractor (same real data and seed), not published FIDs.
* **FRD** (Fréchet Radiomics Distance, Konz, Osuala et al. 2026) through the ``frd-score`` package:
  PyRadiomics features of each 3D volume (first-order, texture; with its default LoG and wavelet filters),
  Fréchet distance, reported as log(d²) as the package does. No weights, nothing downloaded. The volumes are
  written as NIfTI into a private temporary folder (deleted afterwards) because the package reads files.
* **Memorisation in 3D**: each synthetic volume's nearest real reference volumes by feature distance (mean
  slice features over the three planes), then 3D SSIM (scikit-image) with each; the highest is its
  closeness. The held-out real volumes give the reference: how close other real patients come.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PLANES = ("axial", "coronal", "sagittal")
#: Axis of the (X, Y, Z) RAS training grid each plane slices along.
PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def plane_slices(
    volumes: np.ndarray, plane: str, size: int = 64, per_volume: int = 16, margin: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """2D slices of ``volumes`` (N, 1, X, Y, Z) in [0, 1] along ``plane``, resized to ``size``².

    ``per_volume`` slices evenly spaced over the central ``1 - 2 margin`` of the axis (the borders are
    mostly background). Returns (slices (M, 1, size, size) uint8, position tercile (M,) 0/1/2).
    """
    import torch
    import torch.nn.functional as F

    axis = PLANE_AXIS[plane] + 2
    n_axis = volumes.shape[axis]
    lo, hi = int(round(margin * (n_axis - 1))), int(round((1 - margin) * (n_axis - 1)))
    index = np.unique(np.linspace(lo, hi, min(per_volume, hi - lo + 1)).round().astype(int))
    picked = np.take(np.asarray(volumes, dtype=np.float32), index, axis=axis)  # (N, 1, ..., k, ...)
    picked = np.moveaxis(picked, axis, 1)  # (N, k, 1, a, b)
    slices = picked.reshape(-1, 1, *picked.shape[3:])
    t = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(slices)),
        size=(size, size),
        mode="bilinear",
        align_corners=False,
    )
    images = (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    tercile = np.minimum(2, (index - lo) * 3 // max(1, hi - lo + 1))
    return images, np.tile(tercile, len(volumes)).astype(np.int64)


def pretext_slices(
    volumes: np.ndarray, size: int = 64, per_volume: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Slices of all three planes with pretext labels ``3 * plane + tercile`` (9 classes)."""
    images, labels = [], []
    for p, plane in enumerate(PLANES):
        x, t = plane_slices(volumes, plane, size, per_volume)
        images.append(x)
        labels.append(3 * p + t)
    return np.concatenate(images), np.concatenate(labels)


PRETEXT_CLASSES = [
    f"{plane} {third}" for plane in PLANES for third in ("first third", "middle", "last third")
]


def train_slice_features(
    reference: np.ndarray,
    size: int = 64,
    seed: int = 0,
    epochs: int | None = None,
    per_volume: int = 16,
    log: Callable[[str], None] | None = None,
):
    """A ResNet9 trained on the reference volumes' slices (pretext task above) and its feature module."""
    from medsyn_imaging.evaluation.classifier import default_config, train_classifier
    from medsyn_imaging.evaluation.features import ClassifierFeatures
    from medsyn_imaging.evaluation.labelled_images import LabelledImages

    images, labels = pretext_slices(reference, size, per_volume)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_val = max(len(PRETEXT_CLASSES), len(images) // 5)
    val, train = order[:n_val], order[n_val:]
    config = default_config(
        len(train), len(PRETEXT_CLASSES), seed=seed, epochs=epochs, hflip=False, max_rotation=5.0
    )
    clf = train_classifier(
        LabelledImages(images[train], labels[train]),
        LabelledImages(images[val], labels[val]),
        PRETEXT_CLASSES,
        config,
        log=log,
    )
    features = ClassifierFeatures(clf)
    features.name = (
        f"ResNet9 ({features.num_features}-d) trained on the reference slices to tell plane and "
        "position (label-free pretext task)"
    )
    return clf, features


@dataclass
class PlaneFID:
    plane: str
    synthetic: float
    floor: float


def slice_features(
    extractor, volumes: np.ndarray, size: int = 64, per_volume: int = 16
) -> dict[str, np.ndarray]:
    """Features of every plane's slices: plane -> (N, per_volume', F) float64 (one pass of the extractor)."""
    from medsyn_imaging.evaluation.features import extract_features

    out = {}
    for plane in PLANES:
        images, _ = plane_slices(volumes, plane, size, per_volume)
        features = extract_features(extractor, images)
        out[plane] = features.reshape(len(volumes), -1, features.shape[1])
    return out


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two feature sets (n, F) and (m, F): the FID formula, through the implementation
    ``frd-score`` ships (pytorch-fid's, numerically stabilised), applied to precomputed features."""
    from frd_score.frd import calculate_frechet_distance

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if min(len(a), len(b)) < 2:
        raise ValueError(
            f"The Fréchet distance needs at least two feature vectors per set ({len(a)}, {len(b)})."
        )
    value = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    return float(max(value, 0.0))


def fid_three_planes(
    reference: dict[str, np.ndarray], held_out: dict[str, np.ndarray], synthetic: dict[str, np.ndarray]
) -> list[PlaneFID]:
    """Per plane, FID of the synthetic and of the held-out slices against the reference slices, from the
    slice features of :func:`slice_features`."""
    flat = {
        name: {p: f.reshape(-1, f.shape[-1]) for p, f in feats.items()}
        for name, feats in (("ref", reference), ("held", held_out), ("syn", synthetic))
    }
    return [
        PlaneFID(
            p,
            frechet_distance(flat["ref"][p], flat["syn"][p]),
            frechet_distance(flat["ref"][p], flat["held"][p]),
        )
        for p in PLANES
    ]


def _write_niftis(volumes: np.ndarray, folder: Path, spacing: Sequence[float]) -> list[str]:
    """Volumes (N, 1, X, Y, Z) in [0, 1] -> folder/vol-001.nii.gz … (scaled to 0..1000, RAS affine)."""
    import nibabel as nib

    from medsyn_imaging.training.volume_data import ras_affine

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, volume in enumerate(volumes, start=1):
        data = (np.clip(volume[0], 0, 1) * 1000).astype(np.float32)
        path = folder / f"vol-{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(data, ras_affine(data.shape, spacing)), str(path))
        paths.append(str(path))
    return paths


def frd(
    a: np.ndarray,
    b: np.ndarray,
    spacing: Sequence[float],
    image_types: Sequence[str] | None = None,
    workers: int = 1,
) -> float:
    """Fréchet Radiomics Distance (``frd_score.compute_frd``, version 1) between two sets of volumes
    (N, 1, X, Y, Z) in [0, 1] with voxel ``spacing`` (mm). ``image_types`` None = the package's default
    filters (Original, LoG, Wavelet); ``["Original"]`` is ~5x faster (tests)."""
    import logging

    from frd_score import compute_frd

    from medsyn_core.settings import private_temp_dir

    if min(len(a), len(b)) < 2:
        raise ValueError(f"FRD needs at least two volumes per set (got {len(a)} and {len(b)}).")
    with private_temp_dir("medsyn-frd-") as tmp:
        paths = [_write_niftis(a, tmp / "a", spacing), _write_niftis(b, tmp / "b", spacing)]
        quiet = io.StringIO()
        logging.getLogger("radiomics").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(quiet):
            value = compute_frd(
                paths, num_workers=workers, image_types=list(image_types) if image_types else None
            )
    value = float(value)
    if not np.isfinite(value) and value < 0:  # identical feature statistics: log(0)
        return float("-inf")
    return value


def volume_features(features: dict[str, np.ndarray]) -> np.ndarray:
    """One vector per volume from :func:`slice_features`: each plane's mean slice feature, concatenated
    (N, 3 F)."""
    return np.concatenate([features[p].mean(axis=1) for p in PLANES], axis=1)


def to_uint8(volumes: np.ndarray) -> np.ndarray:
    return (np.clip(volumes, 0, 1) * 255).round().astype(np.uint8)


def split_real(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``n`` real volumes into reference and held-out halves (held-out gets the smaller)."""
    if n < 4:
        raise ValueError(f"The 3D evaluation needs at least 4 real volumes (two per half), got {n}.")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: (n + 1) // 2]), np.sort(order[(n + 1) // 2 :])


def evaluate_volumes(
    real,
    synthetic: np.ndarray,
    *,
    seed: int = 0,
    feature_epochs: int | None = None,
    frd_image_types: Sequence[str] | None = None,
    ssim_threshold: float = 0.95,
    slice_size: int = 64,
    per_volume: int = 16,
    synthetic_label: str = "synthetic volumes",
    log: Callable[[str], None] | None = None,
):
    """The 3D fidelity/privacy report of ``synthetic`` (N, 1, X, Y, Z) in [0, 1] against ``real`` (a
    :class:`~medsyn_imaging.training.volume_data.VolumeTrainingSet` on the same grid).

    ``slice_size``: side the slices are resized to for the 2D feature network; ``per_volume``: slices per
    volume and plane; ``feature_epochs``: training epochs of that network (None: from the data size)."""
    from medsyn_core.report import Metric, Report, Section, Table
    from medsyn_imaging.evaluation.memorisation import memorisation_check

    say = log or (lambda _m: None)
    synthetic = np.asarray(synthetic, dtype=np.float32)
    if synthetic.shape[1:] != real.volumes.shape[1:]:
        raise ValueError(
            f"Synthetic volumes are {synthetic.shape[1:]} but the real ones {real.volumes.shape[1:]} "
            "(C, X, Y, Z); sample the generator trained on this grid."
        )
    ref_idx, held_idx = split_real(len(real.volumes), seed)
    reference, held_out = real.volumes[ref_idx], real.volumes[held_idx]
    rng = np.random.default_rng(seed)
    compared_index = np.arange(len(synthetic))
    if len(synthetic) > len(held_out):  # the same size as the floor's set: the same small-sample bias
        compared_index = np.sort(rng.choice(len(synthetic), len(held_out), replace=False))
    compared = synthetic[compared_index]
    if len(compared) < 2:
        raise ValueError("Give at least two synthetic volumes.")
    say(f"training the slice feature network on {len(reference)} reference volumes")
    _, extractor = train_slice_features(
        reference, size=slice_size, seed=seed, epochs=feature_epochs, per_volume=per_volume, log=log
    )
    say("FID on the axial, coronal and sagittal planes")
    feats = {
        name: slice_features(extractor, volumes, slice_size, per_volume)
        for name, volumes in (("reference", reference), ("held_out", held_out), ("synthetic", synthetic))
    }
    compared_feats = {p: f[compared_index] for p, f in feats["synthetic"].items()}
    planes = fid_three_planes(feats["reference"], feats["held_out"], compared_feats)
    say("FRD (frd-score, PyRadiomics features)")
    frd_syn = frd(reference, compared, real.spacing, frd_image_types)
    frd_floor = frd(reference, held_out, real.spacing, frd_image_types)
    say("3D memorisation check")
    mem = memorisation_check(
        to_uint8(synthetic),
        volume_features(feats["synthetic"]),
        to_uint8(reference),
        volume_features(feats["reference"]),
        to_uint8(held_out),
        volume_features(feats["held_out"]),
        ssim_threshold=ssim_threshold,
        k=min(3, len(reference)),
    )
    mean_syn = float(np.mean([p.synthetic for p in planes]))
    mean_floor = float(np.mean([p.floor for p in planes]))
    report = Report(
        f"3D evaluation: {synthetic_label} vs {real.source}",
        "imaging",
        inputs={
            "real volumes": f"{len(real.volumes)} ({len(reference)} reference, {len(held_out)} held out), "
            "grid "
            f"{'x'.join(map(str, real.shape))} at {'x'.join(f'{s:g}' for s in real.spacing)} mm",
            "synthetic": f"{synthetic_label}: {len(synthetic)} volumes ({len(compared)} compared)",
            "feature extractor": extractor.name,
            "seed": seed,
        },
    )
    fid_metrics = [
        Metric(
            f"fid_{p.plane}",
            f"FID {p.plane}",
            p.synthetic,
            f"Fréchet distance of {p.plane} slices to the reference slices (lower is better).",
            reference=p.floor,
            reference_label="real-vs-real floor",
        )
        for p in planes
    ]
    fid_metrics.append(
        Metric(
            "fid_3plane",
            "FID, mean of the three planes",
            mean_syn,
            "MAISI's three-plane FID: the mean of the three (lower is better).",
            reference=mean_floor,
            reference_label="real-vs-real floor",
            good=bool(mean_syn <= 2 * max(mean_floor, 1e-9)),
        )
    )
    fid_metrics.append(
        Metric(
            "frd",
            "FRD (log d²)",
            frd_syn,
            "Fréchet Radiomics Distance of 3D radiomics features (frd-score; lower is better).",
            reference=frd_floor,
            reference_label="real-vs-real floor",
        )
    )
    report.add(
        Section(
            "fidelity_3d",
            "Fidelity of the volumes",
            f"Three-plane FID {mean_syn:.3g} vs a real-vs-real floor of {mean_floor:.3g}; FRD "
            f"{frd_syn:.3g} vs {frd_floor:.3g}.",
            metrics=fid_metrics,
            tables=[
                Table(
                    "fid_planes",
                    "FID per plane",
                    [{"plane": p.plane, "synthetic": p.synthetic, "real floor": p.floor} for p in planes],
                )
            ],
        )
    )
    summary = mem.summary()
    report.add(
        Section(
            "memorisation_3d",
            "Memorisation (3D)",
            f"{summary['n_flagged']} of {summary['n_synthetic']} synthetic volumes have 3D SSIM >= "
            f"{ssim_threshold} with a real reference volume.",
            metrics=[
                Metric(
                    "max_ssim_3d",
                    "Highest 3D SSIM to a real volume",
                    summary["max_ssim"],
                    "Closest any synthetic volume comes to a real reference volume (1 = copy).",
                    reference=summary["reference_max_ssim"],
                    reference_label="held-out real volumes",
                    good=summary["n_flagged"] == 0,
                ),
                Metric(
                    "median_ssim_3d",
                    "Median 3D SSIM",
                    summary["median_ssim"],
                    "Typical closeness of a synthetic volume to its nearest real one.",
                    reference=summary["reference_median_ssim"],
                    reference_label="held-out real volumes",
                ),
                Metric(
                    "n_flagged_3d",
                    "Near-copies",
                    summary["n_flagged"],
                    f"Synthetic volumes with 3D SSIM >= {ssim_threshold}.",
                    good=summary["n_flagged"] == 0,
                ),
            ],
        )
    )
    if len(mem.flagged):
        report.warnings.append(f"{len(mem.flagged)} synthetic volume(s) are near-copies of real volumes.")
    if len(held_out) < 10:
        report.warnings.append(
            f"Only {len(held_out)} held-out real volumes: the floors are rough; more volumes "
            "give firmer numbers."
        )
    return report


def report_numbers(report) -> dict[str, Any]:
    """The headline numbers of a 3D report (for the model card's metrics)."""
    fid = report.section("fidelity_3d")
    mem = report.section("memorisation_3d")
    out = {}
    for key in ("fid_3plane", "frd"):
        m = fid.metric(key)
        out[key] = m.value
        out[f"{key}_real_floor"] = m.reference
    out["max_ssim_3d"] = mem.metric("max_ssim_3d").value
    return out
