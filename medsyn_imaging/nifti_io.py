"""NIfTI (.nii, .nii.gz) reading and writing with a correct affine.

NIfTI stores ``(x, y, z[, t])`` = (column, row, slice[, time]) with a RAS+ affine; :class:`Volume` keeps
``(Z, Y, X)`` / ``(T, Z, Y, X)`` with an LPS+ affine (DICOM's convention). The conversion is only an axis
transpose and a sign flip of the affine's first two rows, so no pixel is resampled.

Written files carry the same affine as sform and qform; the codes say what the coordinates mean:
``scanner`` (1) for images that come from a scanner, ``aligned`` (2) for synthetic images (their patient
frame is nominal). The data type is chosen deliberately (see :func:`choose_nifti_dtype`).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from medsyn_core.files import atomic_write_bytes
from medsyn_imaging.volume import LPS_TO_RAS, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | Path) -> Volume:
    """Read a 2D, 3D or 4D NIfTI as a Volume (scaling by scl_slope/scl_inter applied, float32 then).

    2D images become ``(1, Y, X)``; 4D ``(x, y, z, t)`` becomes ``(T, Z, Y, X)``; RGB NIfTI (RGB24)
    becomes ``(Z, Y, X, 3)``. Dimensions beyond the fourth are refused.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give a .nii or .nii.gz file.")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several unrelated types for bad files
        raise ValueError(f"{path.name} is not a readable NIfTI file ({exc}); check that it is complete "
                         "and really .nii/.nii.gz.") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(f"{path.name} is a {type(img).__name__}, not NIfTI; convert it to .nii.gz first.")
    dtype = img.get_data_dtype()
    try:
        raw = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path.name}: image data is truncated or corrupted ({exc}); copy the file "
                         "again.") from exc
    rgb = dtype.names is not None and set(dtype.names) >= {"R", "G", "B"}
    if rgb:
        raw = np.stack([raw["R"], raw["G"], raw["B"]], axis=-1)
    spatial = raw.ndim - (1 if rgb else 0)
    while spatial > 4 and raw.shape[spatial - 1] == 1:  # drop trailing singleton dimensions
        raw = raw.reshape(raw.shape[: spatial - 1] + raw.shape[spatial:])
        spatial -= 1
    if spatial > 4:
        raise ValueError(f"{path.name} has {spatial} dimensions {raw.shape}; MedSyn reads 2D, 3D and 4D "
                         "NIfTI only. Split it into 4D files first.")
    if spatial == 2:
        raw = raw[:, :, None]
    # (x, y, z[, t][, c]) -> ([t,] z, y, x[, c])
    n_spatial = raw.ndim - (1 if rgb else 0)
    pixels = np.transpose(raw, list(range(n_spatial))[::-1] + ([n_spatial] if rgb else []))
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype.byteorder not in ("=", "|"):
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    affine = LPS_TO_RAS @ img.affine
    _, sform_code = img.header.get_sform(coded=True)
    _, qform_code = img.header.get_qform(coded=True)
    notes = []
    if not sform_code and not qform_code:
        notes.append(f"{path.name} has no sform/qform (codes 0): its orientation is unknown and the "
                     "affine only carries the voxel size.")
    units = img.header.get_xyzt_units()[0]
    description = img.header.get("descrip")
    meta = {"sform_code": int(sform_code), "qform_code": int(qform_code), "dtype": str(dtype),
            "spatial_units": str(units),
            "descrip": description.tobytes().split(b"\0")[0].decode("latin-1") if description is not None
            else ""}
    return Volume(pixels=pixels, affine=affine, rgb=bool(rgb), source=path.name, metadata=meta,
                  warnings=notes)


def choose_nifti_dtype(pixels: np.ndarray) -> np.dtype:
    """The on-disk type for ``pixels``: integers keep the smallest standard NIfTI type that holds their
    range (uint8, int16, int32); floats become float32 (enough for image intensities, half of float64)."""
    if pixels.dtype == np.bool_:
        return np.dtype(np.uint8)
    if np.issubdtype(pixels.dtype, np.integer):
        lo, hi = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
        for candidate in (np.uint8, np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return np.dtype(candidate)
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def volume_to_nifti(volume: Volume, synthetic: bool = False, dtype: np.dtype | str | None = None,
                    description: str = ""):
    """Build a ``nibabel.Nifti1Image`` from a Volume (see :func:`write_nifti`)."""
    import nibabel as nib

    pixels = volume.pixels
    dtype = np.dtype(dtype) if dtype is not None else choose_nifti_dtype(pixels)
    if volume.rgb:
        grey_axes = pixels.ndim - 1
        data = np.transpose(pixels, list(range(grey_axes))[::-1] + [grey_axes]).astype(np.uint8)
        rgb_dtype = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
        data = np.ascontiguousarray(data).view(rgb_dtype).reshape(data.shape[:-1])
    else:
        data = np.transpose(pixels, list(range(pixels.ndim))[::-1]).astype(dtype, copy=False)
    affine = LPS_TO_RAS @ volume.affine
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    code = "aligned" if synthetic else "scanner"
    img.set_sform(affine, code=code)
    img.set_qform(affine, code=code)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    if volume.is_4d and "RepetitionTime" in volume.metadata:
        try:
            zooms = list(img.header.get_zooms())
            zooms[3] = float(volume.metadata["RepetitionTime"]) / 1000.0
            img.header.set_zooms(zooms)
        except (ValueError, IndexError):
            pass
    if description:
        img.header["descrip"] = description.encode("ascii", "replace")[:79]
    return img


def write_nifti(volume: Volume, path: str | Path, synthetic: bool = False,
                dtype: np.dtype | str | None = None, description: str = "") -> Path:
    """Write ``volume`` to ``path`` (.nii or .nii.gz) atomically and return the path.

    sform and qform both hold the affine (LPS converted to RAS); their code is ``aligned`` when
    ``synthetic`` else ``scanner``. ``dtype`` defaults to :func:`choose_nifti_dtype`. ``description``
    goes into the 80-byte ``descrip`` header field.
    """
    path = Path(path)
    if not is_nifti(path):
        raise ValueError(f"{path.name}: a NIfTI file name must end in .nii or .nii.gz.")
    data = nifti_bytes(volume, compressed=path.name.lower().endswith(".gz"), synthetic=synthetic,
                       dtype=dtype, description=description)
    return atomic_write_bytes(path, data)


def nifti_bytes(volume: Volume, compressed: bool = True, synthetic: bool = False,
                dtype: np.dtype | str | None = None, description: str = "") -> bytes:
    """The bytes of a ``.nii.gz`` (or ``.nii`` when ``compressed`` is False) file for ``volume``."""
    data = volume_to_nifti(volume, synthetic=synthetic, dtype=dtype, description=description).to_bytes()
    return gzip.compress(data, compresslevel=6, mtime=0) if compressed else data
