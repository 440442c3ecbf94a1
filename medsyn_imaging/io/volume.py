"""The one image type of MedSyn: pixels plus geometry plus (de-identified) source metadata.

Axis order is numpy's, slowest first:

* ``(Z, Y, X)`` grey volume (a 2D image is ``Z == 1``): slice, row, column;
* ``(T, Z, Y, X)`` grey 4D series (e.g. fMRI time points);
* ``(Z, Y, X, 3)`` colour (RGB) images, with ``rgb=True``.

Geometry follows DICOM: ``affine`` is a 4x4 matrix mapping a voxel index written as
``(column, row, slice, 1)`` to patient coordinates in millimetres, LPS+ (x to the patient's left, y to the
back, z to the head). NIfTI uses RAS+ and the reverse axis order; :mod:`medsyn_imaging.io.nifti_io` converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

#: Flips LPS <-> RAS (x and y change sign); it is its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine_from_dicom(orientation: np.ndarray, position: np.ndarray, row_spacing: float,
                      column_spacing: float, slice_step: np.ndarray) -> np.ndarray:
    """LPS affine from DICOM geometry.

    ``orientation`` is ImageOrientationPatient (6 cosines: row direction, then column direction),
    ``position`` ImagePositionPatient of the first slice (mm), ``row_spacing``/``column_spacing`` the two
    PixelSpacing values (mm between rows, mm between columns), ``slice_step`` the vector (mm) from one
    slice's position to the next.
    """
    orientation = np.asarray(orientation, dtype=float)
    affine = np.eye(4)
    affine[:3, 0] = orientation[:3] * column_spacing  # moving along a row = next column
    affine[:3, 1] = orientation[3:6] * row_spacing  # moving down a column = next row
    affine[:3, 2] = np.asarray(slice_step, dtype=float)
    affine[:3, 3] = np.asarray(position, dtype=float)
    return affine


@dataclass
class Volume:
    """Pixels with geometry and source metadata.

    ``pixels``: see the module docstring for the axis order; values are in ``units`` (e.g. ``"HU"`` for CT
    after RescaleSlope/Intercept, ``""`` when the scanner gives arbitrary units).
    ``affine``: 4x4 LPS voxel-to-patient matrix in mm (identity when the source has no geometry).
    ``metadata``: de-identified header fields as plain JSON-able values (never real identifiers).
    ``warnings``: plain-language notes for the user (e.g. burned-in annotation, uneven slice spacing).
    """

    pixels: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    rgb: bool = False
    modality: str = ""
    units: str = ""
    source: str = ""  # where it came from: a file or folder name, or "synthetic"
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    window: tuple[float, float] | None = None  # (center, width) from the source, if it gives one

    def __post_init__(self) -> None:
        self.pixels = np.asarray(self.pixels)
        self.affine = np.asarray(self.affine, dtype=float)
        spatial = self.pixels.ndim - (1 if self.rgb else 0)
        if self.rgb and self.pixels.shape[-1] != 3:
            raise ValueError(f"An RGB volume needs a last axis of 3, got shape {self.pixels.shape}.")
        if spatial not in (3, 4):
            raise ValueError(
                f"Volume pixels must be (Z, Y, X), (T, Z, Y, X) or (Z, Y, X, 3) with rgb=True; "
                f"got shape {self.pixels.shape}. Add a leading axis of 1 for a single 2D image."
            )
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}.")

    # -- shape helpers -------------------------------------------------------------------------
    @property
    def is_4d(self) -> bool:
        return self.pixels.ndim - (1 if self.rgb else 0) == 4

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[1] if self.is_4d else self.pixels.shape[0])

    @property
    def n_timepoints(self) -> int:
        return int(self.pixels.shape[0]) if self.is_4d else 1

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm as (slice, row, column) = (z, y, x), from the affine's column norms."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(norms[2]), float(norms[1]), float(norms[0])

    @property
    def origin(self) -> tuple[float, float, float]:
        """Patient position (LPS, mm) of the centre of the first voxel."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def direction(self) -> np.ndarray:
        """3x3 unit direction cosines (columns: along x/column, y/row, z/slice)."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        norms[norms == 0] = 1.0
        return self.affine[:3, :3] / norms

    def slice_image(self, index: int, time: int = 0) -> np.ndarray:
        """One 2D slice: (Y, X) grey or (Y, X, 3) RGB."""
        stack = self.pixels[time] if self.is_4d else self.pixels
        return stack[index]

    def with_pixels(self, pixels: np.ndarray, **changes: Any) -> Volume:
        """A copy with new pixels (same geometry and metadata unless ``changes`` says otherwise)."""
        fields = {"metadata": dict(self.metadata), "warnings": list(self.warnings), **changes}
        return replace(self, pixels=pixels, **fields)

    def describe(self) -> str:
        """One line for people: shape, spacing and units."""
        z, y, x = self.spacing
        kind = "RGB " if self.rgb else ""
        units = f", values in {self.units}" if self.units else ""
        return (f"{kind}{'x'.join(map(str, self.pixels.shape))} {self.pixels.dtype}, "
                f"voxel {z:g} x {y:g} x {x:g} mm{units}")
