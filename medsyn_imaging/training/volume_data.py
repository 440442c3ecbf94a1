"""Training volumes for the 3D generator: a folder of NIfTI files or DICOM series, resampled to one grid.

Layout of ``root`` (class names are the sub-folder names; real DICOM is de-identified while it is read):

* ``root/<class>/*.nii.gz`` and/or ``root/<class>/<series folder>/`` — one class per sub-folder;
* ``root/*.nii.gz`` — one class (``all``); ``root/<series folder>/*.dcm`` — one class, one series each.

Every volume goes through the same MONAI transforms (MONAI's channel-first ``(1, X, Y, Z)`` arrays with a
RAS affine), so the generator sees one grid whatever the scanner wrote:

1. ``Orientation("RAS")``: voxel axes reordered/flipped to point Right, Anterior, Superior;
2. ``Spacing(target spacing)``: resampled (trilinear) to the declared voxel size in mm;
3. intensity to [0, 1]: CT (values in HU) with a window (:data:`medsyn_imaging.io.windowing.PRESETS`, or
   ``ct`` = -1000..1000 HU) through ``ScaleIntensityRange``; anything else (MR, PET …) by its 0.5th-99.5th
   percentiles through ``ScaleIntensityRangePercentiles`` (arbitrary units: they cannot be mapped back);
4. ``ResizeWithPadOrCrop(target shape)``: centred crop, or padding with 0 (air / background).

The sampled volumes carry the same grid: spacing, RAS orientation, centred at the origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsyn_imaging.io.volume import LPS_TO_RAS, Volume

#: CT window used when none is named: -1000..1000 HU (air to dense bone).
CT_DEFAULT_WINDOW = (0.0, 2000.0)
PERCENTILES = (0.5, 99.5)
TIMEPOINTS = ("first", "all")


@dataclass
class IntensityMapping:
    """How scanner values became [0, 1]: ``kind`` 'window' (value = low + x * (high - low), in ``units``)
    or 'percentile' (per volume, arbitrary units; samples are written as x * 1000)."""

    kind: str
    low: float | None = None
    high: float | None = None
    units: str = ""
    name: str = ""

    def to_values(self, x: np.ndarray) -> np.ndarray:
        """Generated [0, 1] voxels -> values to write (HU for CT windows, 0..1000 otherwise)."""
        x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
        if self.kind == "window":
            return self.low + x * (self.high - self.low)
        return x * 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high, "units": self.units, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntensityMapping:
        return cls(**data)


@dataclass
class VolumeTrainingSet:
    """Volumes (N, 1, X, Y, Z) float32 in [0, 1] on one grid (MONAI's axis order, RAS), labels (N,)."""

    volumes: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    spacing: tuple[float, ...]  # mm per voxel along X, Y, Z
    source: str  # a label for the card ("NIfTI folder brains"), never a patient identifier
    intensity: IntensityMapping
    modality: str = ""
    notes: list[str] = field(default_factory=list)  # what was skipped or assumed, for the user

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.volumes.shape[2:])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=self.n_classes).tolist()

    def fingerprint(self) -> str:
        """:func:`medsyn_core.training.fingerprint` of the volumes and labels (to refuse resuming on other
        data)."""
        from medsyn_core.training import fingerprint

        return fingerprint(self.volumes, self.labels)


def ras_affine(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """RAS voxel-to-mm affine of the training grid: axes along R, A, S, centred at the origin."""
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = -(np.asarray(shape, dtype=float) - 1) / 2 * np.asarray(spacing, dtype=float)
    return affine


def to_volume(
    array: np.ndarray,
    spacing: tuple[float, ...],
    intensity: IntensityMapping,
    modality: str = "",
    source: str = "synthetic",
    metadata: dict[str, Any] | None = None,
) -> Volume:
    """A generated ``(X, Y, Z)`` or ``(1, X, Y, Z)`` array in [0, 1] on the training grid -> a :class:`Volume`
    ``(Z, Y, X)`` with its LPS affine and values in the training units (HU for CT)."""
    array = np.asarray(array)
    if array.ndim == 4:
        array = array[0]
    pixels = np.ascontiguousarray(np.transpose(intensity.to_values(array), (2, 1, 0)))
    affine = LPS_TO_RAS @ ras_affine(array.shape, spacing)
    return Volume(
        pixels.astype(np.float32),
        affine=affine,
        modality=modality,
        units=intensity.units,
        source=source,
        metadata=dict(metadata or {}),
    )


def _monai_input(volume: Volume, time: int = 0):
    """A Volume -> MONAI MetaTensor (1, X, Y, Z) float32 with its RAS affine."""
    import torch
    from monai.data import MetaTensor

    pixels = volume.pixels[time] if volume.is_4d else volume.pixels
    array = np.transpose(np.asarray(pixels, dtype=np.float32), (2, 1, 0))[None]
    return MetaTensor(
        torch.from_numpy(np.ascontiguousarray(array)), affine=torch.from_numpy(LPS_TO_RAS @ volume.affine)
    )


def choose_intensity(volume: Volume, window: str | None) -> IntensityMapping:
    """The intensity mapping for a volume: a CT window for HU values, else percentiles.

    NIfTI carries no modality: naming a CT window (``ct`` or a preset) declares its values to be HU. A
    volume whose DICOM header says another modality (MR, PT …) is refused a HU window."""
    from medsyn_imaging.io.windowing import PRESETS

    is_ct = volume.units == "HU" or volume.modality == "CT"
    if window in (None, "", "auto"):
        if is_ct:
            center, width = CT_DEFAULT_WINDOW
            return IntensityMapping("window", center - width / 2, center + width / 2, "HU", "ct")
        return IntensityMapping("percentile", units="", name="percentile 0.5-99.5")
    if window == "percentile":
        return IntensityMapping("percentile", units="", name="percentile 0.5-99.5")
    if window == "ct":
        center, width = CT_DEFAULT_WINDOW
    elif window in PRESETS:
        center, width = PRESETS[window]
    else:
        raise ValueError(
            f"Unknown intensity window {window!r}; use auto, percentile, ct or one of {', '.join(PRESETS)}."
        )
    if not is_ct and volume.modality not in ("", "OT"):
        raise ValueError(
            f"The window {window!r} is in Hounsfield units, but {volume.source or 'this volume'} is "
            f"{volume.modality}; use 'percentile' (or 'auto') for MR and other modalities."
        )
    return IntensityMapping("window", center - width / 2, center + width / 2, "HU", window)


def prepare_volume(
    volume: Volume,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    intensity: IntensityMapping,
    time: int = 0,
) -> np.ndarray:
    """One Volume -> (1, X, Y, Z) float32 in [0, 1] on the training grid (the four MONAI steps above)."""
    from monai.transforms import (
        Orientation,
        ResizeWithPadOrCrop,
        ScaleIntensityRange,
        ScaleIntensityRangePercentiles,
        Spacing,
    )

    if volume.rgb:
        raise ValueError(f"{volume.source} is an RGB image; the 3D generator takes grey volumes.")
    image = _monai_input(volume, time)
    image = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(image)
    image = Spacing(pixdim=tuple(float(s) for s in spacing), mode="bilinear", padding_mode="border")(image)
    if intensity.kind == "window":
        image = ScaleIntensityRange(
            a_min=intensity.low, a_max=intensity.high, b_min=0.0, b_max=1.0, clip=True
        )(image)
    else:
        image = ScaleIntensityRangePercentiles(
            lower=PERCENTILES[0], upper=PERCENTILES[1], b_min=0.0, b_max=1.0, clip=True
        )(image)
    image = ResizeWithPadOrCrop(spatial_size=tuple(int(s) for s in shape), mode="constant", value=0.0)(image)
    return np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image, dtype=np.float32)


def _items_of(folder: Path) -> list[Path]:
    """NIfTI files and (DICOM) series sub-folders of ``folder``, sorted."""
    from medsyn_imaging.io.nifti_io import is_nifti

    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and ((p.is_file() and is_nifti(p)) or p.is_dir())
    )


def _layout(root: Path) -> dict[str, list[Path]]:
    """Class name -> items (see the module docstring)."""
    from medsyn_imaging.io.nifti_io import is_nifti

    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; give a folder of NIfTI files or DICOM series.")
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if any(p.is_file() and is_nifti(p) for p in entries):
        return {"all": sorted(p for p in entries if p.is_file() and is_nifti(p))}
    subfolders = sorted(p for p in entries if p.is_dir())
    if not subfolders:
        raise ValueError(
            f"{root} holds no NIfTI files and no sub-folders; put volumes in it as *.nii.gz, "
            "one DICOM series per sub-folder, or one sub-folder per class."
        )
    classes = {
        d.name: _items_of(d)
        for d in subfolders
        if any((p.is_file() and is_nifti(p)) or p.is_dir() for p in d.iterdir())
    }
    if classes:
        return {name: items for name, items in classes.items() if items}
    return {"all": subfolders}  # each sub-folder holds the files of one DICOM series


def _read_item(path: Path) -> list[Volume]:
    from medsyn_imaging.io.dicom_read import read_dicom_folder
    from medsyn_imaging.io.nifti_io import read_nifti

    if path.is_file():
        return [read_nifti(path)]
    folder = read_dicom_folder(path)
    if not folder.volumes:
        reasons = "; ".join(p.message for p in folder.problems[:2])
        raise ValueError(f"{path.name}: no readable DICOM series ({reasons}).")
    return folder.volumes


def load_training_volumes(
    source: str | Path,
    shape: tuple[int, int, int] = (32, 32, 32),
    spacing: tuple[float, float, float] = (2.0, 2.0, 2.0),
    window: str | None = "auto",
    timepoints: str = "first",
    limit: int | None = None,
) -> VolumeTrainingSet:
    """Read and resample every volume under ``source`` (see the module docstring).

    ``shape``: voxels along X, Y, Z of the training grid; ``spacing``: its mm per voxel; ``window``: the
    intensity mapping (auto, percentile, ct or a CT preset name); ``timepoints``: of 4D series, ``first``
    only or ``all`` (each time point a volume); ``limit``: read at most this many volumes per class.
    A file that cannot be read is an error naming it: the generator must not silently learn from less.
    """
    from medsyn_core.limits import reading_input, voxel_budget

    if len(shape) != 3 or any(int(s) < 8 for s in shape):
        raise ValueError(f"The training shape needs three sides of at least 8 voxels, got {tuple(shape)}.")
    if len(spacing) != 3 or any(float(s) <= 0 for s in spacing):
        raise ValueError(f"The voxel spacing needs three positive sizes in mm, got {tuple(spacing)}.")
    if timepoints not in TIMEPOINTS:
        raise ValueError(f"timepoints must be one of {', '.join(TIMEPOINTS)}, not {timepoints!r}.")
    root = Path(source)
    layout = _layout(root)
    arrays, labels, notes = [], [], []
    intensity: IntensityMapping | None = None
    modality = ""
    for k, (name, items) in enumerate(layout.items()):
        for item in items[:limit] if limit else items:
            with voxel_budget(), reading_input(item.name):
                volumes = _read_item(item)
            for volume in volumes:
                if intensity is None:
                    intensity = choose_intensity(volume, window)
                    modality = volume.modality or ("CT" if intensity.units == "HU" else "")
                elif intensity.kind == "window" and volume.modality not in ("", "OT", "CT"):
                    raise ValueError(
                        f"{name}/{item.name} is not CT but earlier volumes were; train CT and "
                        "other modalities separately."
                    )
                times = range(volume.n_timepoints) if timepoints == "all" else range(1)
                if volume.is_4d and timepoints == "first":
                    notes.append(
                        f"{name}/{item.name}: 4D series, first of {volume.n_timepoints} time points used"
                    )
                for t in times:
                    arrays.append(prepare_volume(volume, shape, spacing, intensity, time=t))
                    labels.append(k)
    if len(arrays) < 2:
        raise ValueError(
            f"{root.name} gave {len(arrays)} volume(s); a generator needs at least two (and in "
            "practice dozens)."
        )
    assert intensity is not None
    return VolumeTrainingSet(
        np.stack(arrays).astype(np.float32),
        np.asarray(labels, dtype=np.int64),
        list(layout),
        tuple(float(s) for s in spacing),
        f"volume folder {root.name}",
        intensity,
        modality,
        notes,
    )


def images_as_training_set(images: np.ndarray, labels: np.ndarray, class_names: list[str],
                           source: str) -> VolumeTrainingSet:
    """2D training images (N, C, H, W) uint8 (e.g. from
    :func:`~medsyn_imaging.training.training_data.load_training_images` at 64-256 px) as a training set
    of the latent diffusion model: the same trainer then builds the 2D networks (``spatial_dims`` follows
    the data). Pixels are in [0, 1] = grey level / 255; spacing 1 "mm"
    (image pixels have none)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"Give uint8 images (N, C, H, W); got {images.dtype} {images.shape}.")
    return VolumeTrainingSet((images.astype(np.float32) / 255.0), np.asarray(labels, dtype=np.int64),
                             list(class_names), (1.0, 1.0), source,
                             IntensityMapping("window", 0.0, 255.0, "", "grey levels"))
