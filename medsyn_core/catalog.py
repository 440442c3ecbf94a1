"""The catalogue of bundled default datasets (metadata only; the loaders live in the engines).

Shapes here are documented facts about the shipped files, checked by ``tests/test_bundled_data.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medsyn_core.settings import DATA_DIR


@dataclass(frozen=True)
class BundledDataset:
    name: str  # key used by the loaders and the CLI
    kind: str  # 'tabular' or 'imaging'
    relpath: str  # path below data/
    title: str
    shape: str  # human-readable, e.g. "303 rows x 14 columns"
    license: str

    @property
    def path(self) -> Path:
        return DATA_DIR / self.relpath


BUNDLED: tuple[BundledDataset, ...] = (
    BundledDataset(
        "heart_cleveland", "tabular", "tabular/heart_cleveland.csv",
        "UCI Heart Disease (Cleveland): EHR-style table, target `num`",
        "303 rows x 14 columns, 6 missing cells", "CC BY 4.0",
    ),
    BundledDataset(
        "synthea_sample", "tabular", "ehr/synthea_sample",
        "Synthea EHR sample (SYNTHETIC patients): patients, encounters, conditions, medications, "
        "observations, procedures",
        "12 patients, 217 encounters, 130 conditions, 63 medications, 2431 observations, 304 procedures",
        "Apache-2.0",
    ),
    BundledDataset(
        "pneumoniamnist", "imaging", "medmnist/pneumoniamnist.npz",
        "PneumoniaMNIST: chest X-rays, normal vs pneumonia",
        "4708/524/624 train/val/test, 1x28x28 uint8, 2 classes", "CC BY 4.0",
    ),
    BundledDataset(
        "breastmnist", "imaging", "medmnist/breastmnist.npz",
        "BreastMNIST: breast ultrasound, malignant vs normal/benign",
        "546/78/156 train/val/test, 1x28x28 uint8, 2 classes", "CC BY 4.0",
    ),
    BundledDataset(
        "ge_mr_fmri", "imaging", "dicom/ge_mr_fmri",
        "Real GE 3T brain EPI fMRI DICOM series",
        "150 files: 10 time points x 15 slices x 64x64 int16", "BSD-2-Clause",
    ),
)


def bundled(name: str) -> BundledDataset:
    """Look up a bundled dataset by name (clear error listing the valid names)."""
    for item in BUNDLED:
        if item.name == name:
            return item
    raise KeyError(f"No bundled dataset {name!r}. Available: {', '.join(d.name for d in BUNDLED)}.")
