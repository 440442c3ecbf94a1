"""Loaders for the bundled imaging datasets (see ``data/README.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsyn_core.archives import open_npz
from medsyn_core.catalog import bundled

SPLITS = ("train", "val", "test")


@dataclass
class MedMNIST:
    """A MedMNIST-style dataset: images (N, H, W) or (N, H, W, C) uint8 and labels (N,) int64 per split."""

    name: str
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    @property
    def n_classes(self) -> int:
        return int(max(int(lab.max()) for lab in self.labels.values()) + 1)

    @property
    def n_channels(self) -> int:
        return 1 if self.images["train"].ndim == 3 else int(self.images["train"].shape[-1])


def load_medmnist(name_or_path: str | Path) -> MedMNIST:
    """Load a bundled MedMNIST dataset by name (``pneumoniamnist``, ``breastmnist``) or any ``.npz``
    with ``{split}_images`` and ``{split}_labels`` keys for the splits train, val and test."""
    path = Path(name_or_path)
    if not path.suffix:
        path = bundled(str(name_or_path)).path
    if not path.is_file():
        raise FileNotFoundError(f"MedMNIST file not found: {path}")
    with open_npz(path) as archive:  # sizes in the archive checked before numpy allocates anything
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in archive]
        if missing:
            raise ValueError(f"{path.name} lacks the MedMNIST keys {', '.join(missing)}.")
        images = {s: archive[f"{s}_images"] for s in SPLITS}
        labels = {s: archive[f"{s}_labels"].reshape(-1).astype(np.int64) for s in SPLITS}
    return MedMNIST(name=path.stem, images=images, labels=labels)


def bundled_dicom_series_dir() -> Path:
    """Folder of the bundled real GE MR fMRI DICOM series (150 files)."""
    return bundled("ge_mr_fmri").path
