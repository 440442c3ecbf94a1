"""Reading real DICOM: single files, multi-frame files, folders of series, 4D series and DICOMDIR.

* Files are grouped by SeriesInstanceUID; inside a series, images are ordered by their position along
  the slice normal (ImagePositionPatient projected on row x column cosines), then by InstanceNumber.
  Several images at the same position make a 4D series ``(T, Z, Y, X)`` (e.g. fMRI time points).
* RescaleSlope/RescaleIntercept are applied (CT comes out in Hounsfield units).
* Headers are de-identified (:mod:`medsyn_imaging.io.deidentify`) before they go into
  :attr:`Volume.metadata`; the raw header is used only for geometry and ordering and never kept.
* A bad file (not DICOM, truncated, no pixel data, undecodable compression) becomes a
  :class:`FileProblem` naming the file and what to do; the rest of the folder is still read.
* Hostile files: sequences nested deeper than :data:`~medsyn_core.limits.MAX_DICOM_DEPTH` are refused
  right after parsing (pydicom parses nested sequences lazily, one level at a time, so the check itself
  never recurses); Rows x Columns x frames x samples is checked against the voxel limit, and for
  uncompressed data against the bytes really present, *before* pixel data is decoded; a DICOMDIR that
  points outside its own folder is refused.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medsyn_core.limits import InputLimitError, check_voxels
from medsyn_imaging.io.deidentify import Deidentifier, burned_in_warning
from medsyn_imaging.io.dicom_files import (
    _HEADER_ERRORS,
    _PARSE_ERRORS,
    DicomLimitError,
    DicomReadError,
    read_dataset,
)
from medsyn_imaging.io.volume import Volume, affine_from_dicom

#: Header fields never shown even after de-identification (bulky or binary).
_HIDDEN_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"})
_SAME_POSITION_MM = 0.01  # images closer than this along the slice normal share a slice position


@dataclass
class FileProblem:
    """One input that was skipped, and why."""

    path: str
    message: str


@dataclass
class DicomFolder:
    """Result of reading a folder: one volume per series (or multi-frame file) plus skipped inputs."""

    volumes: list[Volume] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)


# -- single datasets -----------------------------------------------------------------------------
def _is_compressed(syntax) -> bool:
    """Whether a transfer syntax UID is a compressed one (False for unknown or malformed UIDs)."""
    try:
        return bool(syntax.is_compressed)
    except (ValueError, AttributeError):
        return False


def _check_pixel_size(ds: Dataset, name: str) -> None:
    """Before decoding: Rows x Columns x frames x samples against the voxel limit, and for uncompressed
    pixel data against the bytes the file really holds."""
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 0) or 0)
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    except _HEADER_ERRORS as exc:
        raise DicomReadError(f"{name}: its image size attributes are not numbers ({exc}); the file is "
                             "damaged and was skipped.") from None
    if photometric == "PALETTE COLOR":
        samples = 3  # decoded to RGB
    voxels = rows * columns * frames * samples
    try:
        check_voxels(voxels, f"{name} ({rows} x {columns} pixels x {frames} frames x {samples} samples)")
    except InputLimitError as exc:
        raise DicomLimitError(f"{exc} The file was skipped.") from None
    if "PixelData" in ds and bits > 0 and not _is_compressed(ds.file_meta.TransferSyntaxUID):
        from pydicom.pixels.utils import get_expected_length

        try:  # pydicom's rule (bit packing, YBR 4:2:2 subsampling)
            expected = get_expected_length(ds, unit="bytes")
            present = len(ds.PixelData or b"")
        except _HEADER_ERRORS:
            return  # a required attribute is missing or unreadable: pydicom's decoder says which
        if present < expected:
            raise DicomReadError(
                f"{name}: its header describes {expected:,} bytes of pixel data (Rows x Columns x frames x "
                f"samples x bits) but the file holds {present:,}; it is truncated or damaged and was "
                "skipped. Copy it again from the source.")


def _pixel_array(ds: Dataset, name: str) -> np.ndarray:
    """Decoded stored values, colour converted to RGB; clear errors for the usual failures. The image
    size is checked (:func:`_check_pixel_size`) before anything is decoded."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop_class = getattr(ds.get("SOPClassUID"), "name", "unknown")
        if "Image Storage" in sop_class:
            raise DicomReadError(
                f"{name} has no pixel data although its SOP class ({sop_class}) is an image: the file is "
                "truncated or its pixel data was removed; it was skipped. Copy it again from the source.")
        raise DicomReadError(
            f"{name} has no pixel data (SOP class {sop_class}: e.g. a report, presentation state or "
            "waveform); it was skipped. Only images can be viewed.")
    syntax = ds.file_meta.TransferSyntaxUID
    _check_pixel_size(ds, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
            photometric = str(ds.get("PhotometricInterpretation", "")).upper()
            if photometric == "PALETTE COLOR":
                from pydicom.pixels import apply_color_lut

                arr = apply_color_lut(arr, ds)
    except (RuntimeError, NotImplementedError) as exc:
        if _is_compressed(syntax):
            raise DicomReadError(
                f"{name} uses the compressed transfer syntax '{syntax.name}' ({syntax}), which cannot be "
                "decoded here (or its compressed data is damaged); it was skipped. Decompress it first, "
                "e.g. `gdcmconv --raw IN OUT` or `dcmdjpeg IN OUT`, then load it again.") from exc
        raise DicomReadError(f"{name}: pixel data cannot be decoded ({exc}); it was skipped.") from exc
    except (*_HEADER_ERRORS, EOFError) as exc:
        raise DicomReadError(
            f"{name}: pixel data is incomplete or inconsistent with the header ({exc}); the file is "
            "probably truncated or corrupted and was skipped. Copy it again from the source.") from exc
    return np.asarray(arr)


def _floats(value, n: int) -> np.ndarray | None:
    try:
        out = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return out if out.size == n else None


@dataclass
class _Frame:
    """One 2D image with what is needed to place it: from a single-frame file or one frame of many."""

    pixels: np.ndarray  # (Y, X) or (Y, X, 3)
    position: np.ndarray | None  # ImagePositionPatient (mm, LPS)
    orientation: np.ndarray | None  # ImageOrientationPatient (6 cosines)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    thickness: float | None
    slope: float
    intercept: float
    order: tuple  # tie-breaker: (InstanceNumber, frame index, ...)


def _pixel_measures(ds: Dataset, *groups: Dataset) -> tuple[float, float]:
    for src in (*groups, ds):
        for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
            value = _floats(src.get(keyword, None) or [], 2) if keyword in src else None
            if value is not None and np.all(value > 0):
                return float(value[0]), float(value[1])
    return 1.0, 1.0


def _sub(group: Dataset | None, keyword: str) -> Dataset | None:
    if group is None or keyword not in group or not group[keyword].value:
        return None
    return group[keyword].value[0]


def _frames_of(ds: Dataset, name: str) -> list[_Frame]:
    """Split a dataset into frames with their geometry (single- or multi-frame)."""
    try:
        return _split_frames(ds, name)
    except DicomReadError:
        raise
    except _HEADER_ERRORS as exc:
        raise DicomReadError(f"{name}: its header is inconsistent ({type(exc).__name__}: {exc}); the file is "
                             "damaged and was skipped.") from None


def _n_frames(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent or unreadable (the pixel size check reports unreadable values)."""
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except _HEADER_ERRORS:
        return 1


def _split_frames(ds: Dataset, name: str) -> list[_Frame]:
    arr = _pixel_array(ds, name)
    rgb = int(ds.get("SamplesPerPixel", 1)) == 3 or str(ds.get("PhotometricInterpretation", "")).upper() \
        == "PALETTE COLOR"
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames == 1:
        arr = arr[None]
    if arr.ndim != (4 if rgb else 3):
        raise DicomReadError(f"{name}: unexpected pixel array shape {arr.shape}; it was skipped.")
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None] * n_frames
    instance = int(ds.get("InstanceNumber", 0) or 0)
    base_position = _floats(ds.get("ImagePositionPatient", []) or [], 3)
    base_orientation = _floats(ds.get("ImageOrientationPatient", []) or [], 6)
    offsets = _floats(ds.get("GridFrameOffsetVector", []) or [], n_frames)  # RT dose
    frames = []
    for i in range(n_frames):
        group = per_frame[i] if i < len(per_frame) else None
        plane = _sub(group, "PlanePositionSequence") or _sub(shared, "PlanePositionSequence")
        orient = _sub(group, "PlaneOrientationSequence") or _sub(shared, "PlaneOrientationSequence")
        measures = _sub(group, "PixelMeasuresSequence") or _sub(shared, "PixelMeasuresSequence")
        value_tf = (_sub(group, "PixelValueTransformationSequence")
                    or _sub(shared, "PixelValueTransformationSequence") or ds)
        position = _floats(plane.get("ImagePositionPatient", []), 3) if plane is not None else base_position
        orientation = (_floats(orient.get("ImageOrientationPatient", []), 6) if orient is not None
                       else base_orientation)
        if position is not None and offsets is not None and orientation is not None and plane is None:
            normal = np.cross(orientation[:3], orientation[3:])
            position = base_position + offsets[i] * normal
        thickness = None
        for src in (measures, ds):
            if src is not None and "SliceThickness" in src and src.SliceThickness not in (None, ""):
                thickness = float(src.SliceThickness)
                break
        frames.append(_Frame(
            pixels=arr[i], position=position, orientation=orientation,
            pixel_spacing=_pixel_measures(ds, measures) if measures is not None else _pixel_measures(ds),
            thickness=thickness,
            slope=float(value_tf.get("RescaleSlope", 1) or 1),
            intercept=float(value_tf.get("RescaleIntercept", 0) or 0),
            order=(instance, i),
        ))
    return frames


# -- assembling frames into a volume ------------------------------------------------------------------
def _assemble(frames: list[_Frame], first: Dataset, name: str, deid: Deidentifier) -> Volume:
    """Order frames along the slice normal (then by instance), stack them, apply rescale, build the
    affine; several frames per position give a 4D (T, Z, Y, X) volume."""
    try:
        return _assemble_frames(frames, first, name, deid)
    except DicomReadError:
        raise
    except _HEADER_ERRORS as exc:
        raise DicomReadError(f"{name}: the header values of its images are inconsistent "
                             f"({type(exc).__name__}: {exc}); it was skipped.") from None


def _assemble_frames(frames: list[_Frame], first: Dataset, name: str, deid: Deidentifier) -> Volume:
    notes: list[str] = []
    shapes = {f.pixels.shape for f in frames}
    if len(shapes) > 1:
        raise DicomReadError(f"{name}: images of different sizes {sorted(shapes)} in one series; load the "
                             "files of each size separately.")
    geometric = all(f.position is not None and f.orientation is not None for f in frames)
    orientation = frames[0].orientation if geometric else np.array([1.0, 0, 0, 0, 1.0, 0])
    if len(frames) > 1 and not geometric:
        notes.append(f"{name}: no ImagePositionPatient/ImageOrientationPatient; images are stacked by "
                     "InstanceNumber with 1 mm nominal slice spacing.")
    elif geometric and any(not np.allclose(f.orientation, orientation, atol=1e-3) for f in frames):
        geometric = False
        notes.append(f"{name}: images have different orientations (e.g. a localizer or radial series), so "
                     "they do not form a volume; they are shown one by one in InstanceNumber order and the "
                     "geometry is that of the first image only.")
    normal = np.cross(orientation[:3], orientation[3:])
    by_position: dict[float, list[_Frame]] = defaultdict(list)
    if geometric:  # cluster distances along the normal: within _SAME_POSITION_MM is one slice position
        ranked = sorted(((float(np.dot(f.position, normal)), f) for f in frames), key=lambda x: x[0])
        key = ranked[0][0]
        for d, f in ranked:
            if d - key > _SAME_POSITION_MM:
                key = d
            by_position[key].append(f)
    else:  # every image is its own slice, ordered by instance
        for i, f in enumerate(sorted(frames, key=lambda f: f.order)):
            by_position[float(i)].append(f)
    positions = sorted(by_position)
    counts = {len(v) for v in by_position.values()}
    if len(counts) > 1:
        raise DicomReadError(
            f"{name}: {len(frames)} images at {len(positions)} slice positions, but not the same number at "
            f"each position ({min(counts)} to {max(counts)}): the series is incomplete or mixes "
            "acquisitions. Add the missing files, or load the complete time points only.")
    n_time = counts.pop()
    stacks = [sorted(by_position[p], key=lambda f: f.order) for p in positions]  # [z][t]
    raw = np.stack([np.stack([stacks[z][t].pixels for z in range(len(positions))]) for t in range(n_time)])
    slopes = np.array([[stacks[z][t].slope for z in range(len(positions))] for t in range(n_time)])
    intercepts = np.array([[stacks[z][t].intercept for z in range(len(positions))] for t in range(n_time)])
    if np.all(slopes == 1) and np.all(intercepts == 0):
        pixels = raw
        if pixels.dtype.byteorder not in ("=", "|"):
            pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    else:
        extra = (1,) * (raw.ndim - 2)
        pixels = (raw.astype(np.float32) * slopes.reshape(slopes.shape + extra).astype(np.float32)
                  + intercepts.reshape(intercepts.shape + extra).astype(np.float32))
        if np.allclose(pixels, np.round(pixels)) and np.abs(pixels).max(initial=0) < 2**15:
            pixels = np.round(pixels).astype(np.int16)
    if n_time == 1:
        pixels = pixels[0]

    # geometry
    row_spacing, column_spacing = frames[0].pixel_spacing
    if geometric and len(positions) > 1:
        starts = [stacks[z][0].position for z in range(len(positions))]
        gaps = np.diff(positions)
        step = (starts[-1] - starts[0]) / (len(positions) - 1)
        if gaps.max() - gaps.min() > max(0.01, 0.01 * float(np.median(gaps))):
            step = normal * float(np.median(gaps))
            notes.append(
                f"{name}: slice spacing is not uniform ({gaps.min():.3g} to {gaps.max():.3g} mm between "
                "slices): a slice may be missing. The slices are shown in order, but distances along the "
                "slice axis (and any NIfTI written from them) are only approximate.")
        origin = starts[0]
    else:
        thickness = frames[0].thickness or 1.0
        step = normal * thickness
        origin = frames[0].position if frames[0].position is not None else np.zeros(3)
    affine = affine_from_dicom(orientation, origin, row_spacing, column_spacing, step)

    # de-identified metadata (the raw header is not kept)
    modality = str(first.get("Modality", ""))
    photometric = str(first.get("PhotometricInterpretation", "")).upper()
    if photometric == "MONOCHROME1":
        pixels = pixels.max() + pixels.min() - pixels
        notes.append(f"{name}: MONOCHROME1 (inverted grey scale) was converted so that bright = high.")
    warning = burned_in_warning(first, name)
    if warning:
        notes.append(warning)
    units = str(first.get("RescaleType", "") or "")
    if not units and modality == "CT" and not (np.all(slopes == 1) and np.all(intercepts == 0)):
        units = "HU"
    window = None
    if "WindowCenter" in first and "WindowWidth" in first:
        center, width = first.WindowCenter, first.WindowWidth
        center = center[0] if isinstance(center, pydicom.multival.MultiValue) else center
        width = width[0] if isinstance(width, pydicom.multival.MultiValue) else width
        try:
            window = (float(center), float(width))
        except (TypeError, ValueError):
            window = None
    header = deid.dataset(_header_copy(first))
    rgb = frames[0].pixels.ndim == 3
    return Volume(pixels=pixels, affine=affine, rgb=bool(rgb), modality=modality, units=units, source=name,
                  metadata=header_dict(header), warnings=notes, window=window)


def _header_copy(ds: Dataset) -> Dataset:
    """A deep copy of the header without the pixel data (for de-identification and display)."""
    out = Dataset()
    for elem in ds:
        if elem.keyword not in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            out.add(copy.deepcopy(elem))
    if hasattr(ds, "file_meta"):
        out.file_meta = copy.deepcopy(ds.file_meta)
    return out


def header_dict(ds: Dataset) -> dict[str, str]:
    """Top-level header fields of a (de-identified) dataset as ``{keyword or tag: text}``."""
    out: dict[str, str] = {}
    for elem in ds:
        if elem.VR in _HIDDEN_VRS or elem.tag.is_private:
            continue
        key = elem.keyword or str(elem.tag)
        value = elem.value
        text = "" if value is None else ("\\".join(str(v) for v in value)
                                         if isinstance(value, pydicom.multival.MultiValue) else str(value))
        out[key] = text[:200]
    return out


# -- public API ---------------------------------------------------------------------------------------
def read_dicom_file(path: str | Path, deidentifier: Deidentifier | None = None) -> Volume:
    """Read one DICOM image file (single- or multi-frame) as a Volume (``Z`` = frames)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file.")
    ds = read_dataset(path)
    return _assemble(_frames_of(ds, path.name), ds, path.name, deidentifier or Deidentifier())


def _series_key(ds: Dataset) -> str:
    return str(ds.get("SeriesInstanceUID", "") or "no-series-uid")


def read_dicom_files(paths: Iterable[str | Path], name: str = "",
                     deidentifier: Deidentifier | None = None) -> DicomFolder:
    """Read DICOM files, grouping them by series; bad files and bad series become problems. A file that
    repeats one already read (same SOPInstanceUID and the same bytes: the same image uploaded twice, e.g. a
    series and again one of its files) is read once; how many were dropped is reported as a note. A file
    with a known SOPInstanceUID but other bytes is read and checked like any other."""
    deid = deidentifier or Deidentifier()
    result = DicomFolder()
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    seen: dict[str, bytes] = {}  # SOPInstanceUID -> SHA-256 of the file
    duplicates = 0
    for path in paths:
        path = Path(path)
        try:
            ds = read_dataset(path)
            if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
                _pixel_array(ds, path.name)  # raises the "no pixel data" message
            key = _series_key(ds)
        except DicomReadError as exc:
            result.problems.append(FileProblem(str(path), str(exc)))
            continue
        except _HEADER_ERRORS as exc:
            result.problems.append(FileProblem(str(path), f"{path.name}: its header is inconsistent "
                                               f"({type(exc).__name__}); it was skipped."))
            continue
        uid = str(ds.get("SOPInstanceUID", "") or "")
        if uid:
            digest = hashlib.sha256(path.read_bytes()).digest()
            if seen.get(uid) == digest:
                duplicates += 1
                continue
            seen.setdefault(uid, digest)
        series[key].append((path, ds))
    if duplicates:
        result.problems.append(FileProblem(
            name or "the input", f"{duplicates} file(s) repeat an image already read (same SOPInstanceUID) "
            "and were read once."))
    for index, (_, members) in enumerate(series.items(), start=1):
        first_path, first = members[0]
        # SeriesDescription is free text that de-identification removes, so it is not used in labels.
        try:
            modality = str(first.get("Modality", "") or "").strip()
        except _HEADER_ERRORS:
            modality = ""
        label = f"{name + ': ' if name else ''}series {index}{f' ({modality})' if modality else ''}"
        multi = [m for m in members if _n_frames(m[1]) > 1]
        groups = [[m] for m in multi] + ([[m for m in members if m not in multi]]
                                         if len(multi) < len(members) else [])
        for group in groups:
            frames: list[_Frame] = []
            for path, ds in group:
                try:
                    frames.extend(_frames_of(ds, path.name))
                except DicomReadError as exc:
                    result.problems.append(FileProblem(str(path), str(exc)))
            if not frames:
                continue
            group_label = label if len(groups) == 1 else f"{label}, {group[0][0].name}"
            try:
                result.volumes.append(_assemble(frames, group[0][1], group_label, deid))
            except DicomReadError as exc:
                result.problems.append(FileProblem(str(first_path.parent), str(exc)))
    return result


def read_dicom_folder(folder: str | Path, deidentifier: Deidentifier | None = None,
                      name: str | None = None) -> DicomFolder:
    """Read every DICOM file under ``folder`` (recursively): one Volume per series, plus problems.

    A ``DICOMDIR`` in the folder is used as the index when present. ``name`` labels the volumes and
    messages (default: the folder's name; e.g. the zip's name for an unpacked upload).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give a folder of DICOM files.")
    if (folder / "DICOMDIR").is_file():
        return read_dicomdir(folder / "DICOMDIR", deidentifier, name=name)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() not in (".txt", ".md", ".json", ".csv")
             and not p.name.upper().startswith(("LICENSE", "README"))]
    if not files:
        raise DicomReadError(f"{folder} contains no files to read; give a folder with DICOM files.")
    return read_dicom_files(files, name=name or folder.name, deidentifier=deidentifier)


def read_dicomdir(path: str | Path, deidentifier: Deidentifier | None = None,
                  name: str | None = None) -> DicomFolder:
    """Read the image files a DICOMDIR lists (grouped by series like a folder); ``name`` as in
    :func:`read_dicom_folder`. A DICOMDIR that points outside its own folder is refused as a whole."""
    from pydicom.fileset import FileSet

    path = Path(path)
    name = name or path.parent.name
    label = f"The DICOMDIR in {name or 'this folder'}"
    root = path.parent.resolve()
    try:
        file_set = FileSet(read_dataset(path))
        files = [Path(instance.path) for instance in file_set]
    except PermissionError:  # pydicom's own check: a ReferencedFileID outside the root folder
        files = None
    except RecursionError:  # directory records that refer to each other in a loop
        raise DicomLimitError(f"{label} has directory records that refer to each other in a loop; load "
                              "the folder of images without it instead.") from None
    except (*_PARSE_ERRORS, NotImplementedError) as exc:
        raise DicomReadError(f"{label} is not usable ({type(exc).__name__}: {exc}); load the folder of "
                             "images without it instead.") from None
    if files is None or any(not f.resolve().is_relative_to(root) for f in files):
        raise DicomReadError(f"{label} refers to files outside its own folder (e.g. with '..'); it was "
                             "refused and nothing it lists was read. Load the folder of images without "
                             "the DICOMDIR instead.")
    if not files:
        raise DicomReadError(f"{label} lists no files; load the folder of images instead.")
    return read_dicom_files(files, name=name, deidentifier=deidentifier)


def read_dicom(path: str | Path, deidentifier: Deidentifier | None = None) -> Volume:
    """Read a DICOM file, DICOMDIR or folder holding exactly one series; clear error otherwise."""
    path = Path(path)
    if path.is_file() and path.name != "DICOMDIR":
        return read_dicom_file(path, deidentifier)
    result = read_dicomdir(path, deidentifier) if path.is_file() else read_dicom_folder(path, deidentifier)
    if len(result.volumes) == 1:
        result.volumes[0].warnings.extend(f"{Path(p.path).name}: {p.message}" for p in result.problems)
        return result.volumes[0]
    if not result.volumes:
        reasons = "; ".join(p.message for p in result.problems[:3])
        raise DicomReadError(f"No readable DICOM image in {path}. {reasons}")
    names = ", ".join(v.source for v in result.volumes)
    raise DicomReadError(f"{path} holds {len(result.volumes)} series ({names}); use read_dicom_folder() "
                         "to get them all, or give the folder of one series.")
