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
    #: images: the DICOM modality of the source scans, and a nominal field of view (mm) of one image side.
    #: MedMNIST gives no pixel size (its images are downscaled crops), so synthetic exports state a
    #: nominal size: the usual field of view of the modality divided by the image size.
    modality: str = ""
    nominal_fov_mm: float | None = None

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
        modality="DX", nominal_fov_mm=300.0,  # paediatric chest radiographs (Kermany et al. 2018)
    ),
    BundledDataset(
        "breastmnist", "imaging", "medmnist/breastmnist.npz",
        "BreastMNIST: breast ultrasound, malignant vs normal/benign",
        "546/78/156 train/val/test, 1x28x28 uint8, 2 classes", "CC BY 4.0",
        modality="US", nominal_fov_mm=50.0,  # breast ultrasound images (Al-Dhabyani et al. 2020)
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
