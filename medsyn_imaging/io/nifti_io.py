"""NIfTI (.nii, .nii.gz) reading and writing with a correct affine.

NIfTI stores ``(x, y, z[, t])`` = (column, row, slice[, time]) with a RAS+ affine; :class:`Volume` keeps
``(Z, Y, X)`` / ``(T, Z, Y, X)`` with an LPS+ affine (DICOM's convention). The conversion is only an axis
transpose and a sign flip of the affine's first two rows, so no pixel is resampled.

Written files carry the same affine as sform and qform; the codes say what the coordinates mean:
``scanner`` (1) for images that come from a scanner, ``aligned`` (2) for synthetic images (their patient
frame is nominal). The data type is chosen deliberately (see :func:`choose_nifti_dtype`).

Hostile files: before nibabel touches the data, :func:`check_nifti_sizes` reads the header alone and
checks what it claims (dimensions x data type) against the voxel limit
(:data:`medsyn_core.limits.MAX_VOXELS`) and against the bytes the file really holds (for ``.nii.gz``
the decompressed bytes, counted while streaming with bounded memory), so a 60-byte file whose header
claims gigabytes is refused without allocating them.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from medsyn_core.files import atomic_write_bytes
from medsyn_core.limits import check_voxels, error_detail
from medsyn_imaging.io.volume import LPS_TO_RAS, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Header plus extensions (the data offset) beyond this is refused: real extensions are a few kB.
MAX_NIFTI_HEADER_BYTES = 16 * 2**20
#: Decompressed bytes a ``.nii.gz`` may hold beyond its header and the data the header describes.
NIFTI_TRAILING_BYTES = 1 << 20
_CHUNK = 1 << 20


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
    check_nifti_sizes(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several unrelated types for bad files
        raise _not_readable(path, error_detail(exc, path)) from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(f"{path.name} is a {type(img).__name__}, not NIfTI; convert it to .nii.gz first.")
    dtype = img.get_data_dtype()
    try:
        raw = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path.name}: image data is truncated or corrupted ({error_detail(exc, path)}); "
                         "copy the file again.") from None
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
    from nibabel.spatialimages import HeaderDataError

    try:
        affine = LPS_TO_RAS @ img.affine
        _, sform_code = img.header.get_sform(coded=True)
        _, qform_code = img.header.get_qform(coded=True)
    except (HeaderDataError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise _not_readable(path, f"invalid orientation fields: {error_detail(exc, path)}") from None
    notes = []
    if not sform_code and not qform_code:
        notes.append(f"{path.name} has no sform/qform (codes 0): its orientation is unknown and the "
                     "affine only carries the voxel size.")
    try:
        units = img.header.get_xyzt_units()[0]
    except KeyError:  # a unit code NIfTI does not define
        units = "unknown"
    description = img.header.get("descrip")
    meta = {"sform_code": int(sform_code), "qform_code": int(qform_code), "dtype": str(dtype),
            "spatial_units": str(units),
            "descrip": description.tobytes().split(b"\0")[0].decode("latin-1") if description is not None
            else ""}
    return Volume(pixels=pixels, affine=affine, rgb=bool(rgb), source=path.name, metadata=meta,
                  warnings=notes)


def _not_readable(path: Path, why: str) -> ValueError:
    return ValueError(f"{path.name} is not a readable NIfTI file ({why}); check that it is complete and "
                      "really .nii/.nii.gz.")


def check_nifti_sizes(path: str | Path) -> int:
    """Check a NIfTI's header against the file before any image data is read; returns the number of
    values the image decodes to (voxels x channels), which is charged to the voxel limit
    (:func:`medsyn_core.limits.check_voxels`) before the data is counted.

    Raises ``ValueError`` when the header is not NIfTI-1/2, its data offset is implausibly large, the
    file holds fewer bytes than dimensions x data type need (truncated or crafted), or a ``.nii.gz``
    decompresses to more than :data:`NIFTI_TRAILING_BYTES` beyond that (a decompression bomb).
    """
    from nibabel.nifti1 import Nifti1Header
    from nibabel.nifti2 import Nifti2Header
    from nibabel.spatialimages import HeaderDataError

    path = Path(path)
    compressed = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as fh:
            raw = fh.read(540)
            sizeof_hdr = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
            if sizeof_hdr not in (348, 540):
                sizeof_hdr = int.from_bytes(raw[:4], "big")
            if sizeof_hdr not in (348, 540) or len(raw) < sizeof_hdr:
                raise _not_readable(path, "no NIfTI-1 or NIfTI-2 header at its start")
            header_class = Nifti1Header if sizeof_hdr == 348 else Nifti2Header
            try:
                header = header_class(raw[:sizeof_hdr], check=True)
                shape = tuple(int(n) for n in header.get_data_shape())
                dtype = header.get_data_dtype()
                offset = int(header.get_data_offset())
            except (HeaderDataError, ValueError, TypeError, KeyError, OverflowError) as exc:
                raise _not_readable(path, f"invalid header: {exc}") from None
            if any(n < 0 for n in shape):
                raise _not_readable(path, f"negative dimensions {shape} in its header")
            values = 1
            for n in shape:
                values *= n
            data_bytes = values * dtype.itemsize
            if not 0 <= offset <= MAX_NIFTI_HEADER_BYTES:
                raise _not_readable(path, f"its image data supposedly starts at byte {offset:,}")
            check_voxels(values * (len(dtype.names) if dtype.names else 1),
                         f"{path.name} ({' x '.join(map(str, shape)) or 'no dimensions'}, {dtype})")
            needed = offset + data_bytes
            if raw[sizeof_hdr:sizeof_hdr + 1] not in (b"", b"\0"):  # the extension flag is set
                _check_extensions(fh, path, sizeof_hdr + 4, offset, header.endianness)
            if compressed:  # count what really decompresses, in bounded memory
                present = fh.tell()
                while present <= needed + NIFTI_TRAILING_BYTES and (chunk := fh.read(_CHUNK)):
                    present += len(chunk)
                if present > needed + NIFTI_TRAILING_BYTES:
                    raise _not_readable(path, "it decompresses to far more data than its header describes")
            else:
                present = path.stat().st_size
    except (OSError, EOFError, zlib.error) as exc:
        raise _not_readable(path, f"{type(exc).__name__}: {exc}") from None
    if present < needed:
        raise _not_readable(path, f"its header describes {needed:,} bytes ({' x '.join(map(str, shape))} "
                                  f"{dtype}) but the file holds only {present:,}: it is truncated or crafted")
    return values * (len(dtype.names) if dtype.names else 1)


def _check_extensions(fh, path: Path, start: int, offset: int, endianness: str) -> None:
    """Walk the header extensions the way nibabel will read them and refuse sizes that do not fit
    between the header and the image data: nibabel reads each with one ``read(esize - 8)``, so a crafted
    esize would allocate up to 2 GiB (or, below 8, read the whole file)."""
    remaining, position = offset - start, start
    if remaining < 0:  # nibabel would then read extensions up to the end of the file
        raise _not_readable(path, f"it has header extensions but its image data starts at byte {offset}, "
                                  "inside the header")
    while remaining >= 16:  # nibabel's loop condition
        fh.seek(position)
        head = fh.read(8)
        if len(head) < 8:
            raise _not_readable(path, "its header extensions are truncated")
        esize = int.from_bytes(head[:4], "big" if endianness == ">" else "little", signed=True)
        if esize < 8 or esize > remaining:
            raise _not_readable(path, f"a header extension claims {esize:,} bytes, which does not fit "
                                      "between the header and the image data")
        position, remaining = position + esize, remaining - esize


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
