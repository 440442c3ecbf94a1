"""Writing synthetic DICOM that viewers and PACS accept and nobody can mistake for a real patient.

Every file is a Secondary Capture Image (SOP class 1.2.840.10008.5.1.4.1.1.7) with

* fresh UIDs (one study per :class:`SyntheticStudy`, one series per call, one instance per image);
* ``ImageType = DERIVED\\SECONDARY``, ``ConversionType = SYN`` (synthetic), ``BurnedInAnnotation = NO``,
  ``PatientIdentityRemoved = YES``, ``Manufacturer = MedSyn``, a SeriesDescription starting with
  ``SYNTHETIC`` and a patient ``SYNTHETIC^MEDSYN`` / ``MEDSYN-SYN-…`` that cannot be a real one;
* the generation provenance (model, seed, …) as JSON in ImageComments (0020,4000, LT);
* 8-bit or 16-bit pixels with matching BitsAllocated/BitsStored/HighBit/PixelRepresentation, and
  RescaleSlope/RescaleIntercept when float values were quantised (stored * slope + intercept = value);
* for volumes, the geometry per slice: ImagePositionPatient, ImageOrientationPatient, PixelSpacing,
  SliceThickness, SpacingBetweenSlices and a FrameOfReferenceUID shared by the series;
* for a stack of 2D samples, optionally the modality of the data the generator learned from (``DX``,
  ``US``… instead of ``OT``; the SC Equipment module's Modality, which the SC IOD allows to override the
  series'), the pixel spacing (PixelSpacing of the SC Image module's Basic Pixel Spacing Calibration
  macro, uncalibrated: a nominal size) and a window (WindowCenter/WindowWidth, VOI LUT module) so that
  viewers show the pixels as MedSyn previewed them. The IOD stays the modality-neutral Secondary Capture
  Image, the one meant for images that no acquisition device produced.

Files are written into a temporary folder that is renamed into place only when complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from medsyn_core import __version__
from medsyn_core.files import atomic_directory, atomic_write_bytes
from medsyn_imaging.io.volume import Volume

SYNTHETIC_PATIENT_NAME = "SYNTHETIC^MEDSYN"
SYNTHETIC_PATIENT_PREFIX = "MEDSYN-SYN-"
MANUFACTURER = "MedSyn"


@dataclass
class SyntheticStudy:
    """Identity of one synthetic study: all series written with it share patient and study UID."""

    study_uid: str = field(default_factory=generate_uid)
    patient_id: str = field(default_factory=lambda: SYNTHETIC_PATIENT_PREFIX + secrets.token_hex(4).upper())
    study_id: str = field(default_factory=lambda: "SYN" + secrets.token_hex(3).upper())
    created: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.UTC))
    series_count: int = 0


def _ds_str(value: float) -> str:
    """A decimal string that fits DICOM's DS (16 characters)."""
    for digits in range(10, 3, -1):
        text = format(float(value), f".{digits}g")
        if len(text) <= 16:
            return text
    raise ValueError(f"{value} cannot be written as a DICOM decimal string.")


@dataclass
class Quantized:
    """Stored integers plus the rescale that maps them back: value = stored * slope + intercept."""

    stored: np.ndarray
    slope: float
    intercept: float
    slope_text: str
    intercept_text: str


def quantize(pixels: np.ndarray, bits: int) -> Quantized:
    """Integer pixels that fit ``bits`` are stored unchanged (slope 1, intercept 0); anything else is
    scaled linearly onto the full unsigned range (0..255 or 0..65535), min and max exactly
    representable, with the error at most half a slope."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}.")
    pixels = np.asarray(pixels)
    if not np.all(np.isfinite(pixels)):
        raise ValueError("Pixels contain NaN or infinity; replace them before writing DICOM.")
    if np.issubdtype(pixels.dtype, np.integer) or pixels.dtype == np.bool_:
        lo, hi = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
        for dtype in ((np.uint8,) if bits == 8 else (np.uint16, np.int16)):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return Quantized(pixels.astype(dtype), 1.0, 0.0, "1", "0")
    top = 2**bits - 1
    lo, hi = float(pixels.min()), float(pixels.max())
    intercept_text = _ds_str(lo)
    intercept = float(intercept_text)
    slope_text = _ds_str((hi - intercept) / top) if hi > intercept else "1"
    slope = float(slope_text)
    if slope <= 0:
        slope_text, slope = "1", 1.0
    stored = np.clip(np.round((pixels.astype(np.float64) - intercept) / slope), 0, top)
    return Quantized(stored.astype(np.uint8 if bits == 8 else np.uint16), slope, intercept, slope_text,
                     intercept_text)


def _base_dataset(study: SyntheticStudy, series_uid: str, series_number: int, description: str,
                  provenance: dict[str, Any] | None) -> Dataset:
    now = study.created
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.StudyDate = ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.Modality = "OT"
    ds.ConversionType = "SYN"
    ds.Manufacturer = MANUFACTURER
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = ("SYNTHETIC " + description).strip()[:64]
    ds.StudyDescription = "SYNTHETIC study generated by MedSyn"
    ds.ManufacturerModelName = "MedSyn"
    ds.SoftwareVersions = __version__
    ds.PatientName = SYNTHETIC_PATIENT_NAME
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "SYNTHETIC: generated by MedSyn, no real patient"
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = [code]
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series_number
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.Laterality = ""  # type 2C; empty = unknown (synthetic images have no real body side)
    comment = {"synthetic": True, "generator": "MedSyn", "medsyn_version": __version__}
    comment.update(provenance or {})
    text = "SYNTHETIC image generated by MedSyn. Provenance: " + json.dumps(comment, sort_keys=True,
                                                                           default=str)
    if len(text) > 10240:  # LT holds at most 10240 characters
        raise ValueError(f"The provenance is {len(text)} characters long; DICOM ImageComments holds 10240. "
                         "Keep large items (e.g. full configs) in the JSON sidecar only.")
    ds.ImageComments = text
    return ds


def _pixel_module(ds: Dataset, image: np.ndarray, rgb: bool) -> None:
    ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
    if rgb:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    bits = image.dtype.itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if np.issubdtype(image.dtype, np.signedinteger) else 0
    ds.PixelData = np.ascontiguousarray(image.astype(image.dtype.newbyteorder("<"))).tobytes()


def _file_bytes(ds: Dataset) -> bytes:
    import io

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom_series(volume: Volume, out: str | Path, *, description: str = "",
                       provenance: dict[str, Any] | None = None, bits: int | None = None,
                       study: SyntheticStudy | None = None, geometry: bool | None = None,
                       per_image: Sequence[dict[str, Any]] | None = None,
                       sidecar: dict[str, Any] | None = None, multiframe: bool = False,
                       overwrite: bool = False, modality: str | None = None,
                       pixel_spacing: tuple[float, float] | None = None,
                       window: tuple[float, float] | None = None) -> Path:
    """Write a synthetic ``volume`` as one DICOM series in the new folder ``out`` (``IMG00001.dcm`` …).

    ``volume.pixels``: ``(Z, Y, X)`` grey or ``(Z, Y, X, 3)`` RGB (uint8); 4D volumes are refused.
    ``bits``: 8 or 16 for grey (default: 8 for uint8 input, else 16); RGB is always 8-bit.
    ``geometry``: write ImagePositionPatient etc. from ``volume.affine`` (default: when Z > 1 and the
    affine is not the identity, i.e. for volumes; a stack of independent 2D samples has none).
    ``provenance`` (model, seed …) goes into every file's ImageComments; ``per_image[i]`` adds entries
    for image ``i`` only (e.g. its class label). ``sidecar`` is written as ``provenance.json`` in the
    same folder. ``multiframe=True`` writes all images into one file ``IMG00001.dcm`` of the matching
    multi-frame SC class (grayscale byte / grayscale word / true colour), without patient geometry.
    ``modality`` (a DICOM defined term such as ``DX`` or ``US``; default ``OT``), ``pixel_spacing``
    ((row, column) mm, nominal; used when no geometry is written) and ``window`` ((center, width) in
    stored-value units after rescale, grey images only) are written to every image.
    Returns ``out``.
    """
    if volume.is_4d:
        raise ValueError("4D volumes cannot be written as one DICOM series; write each time point "
                         "separately or use NIfTI.")
    pixels = volume.pixels
    if volume.rgb:
        if pixels.dtype != np.uint8:
            raise ValueError(f"RGB DICOM is 8-bit: give uint8 pixels, got {pixels.dtype}.")
        bits = 8
        q = Quantized(pixels, 1.0, 0.0, "1", "0")
    else:
        bits = bits or (8 if pixels.dtype == np.uint8 else 16)
        q = quantize(pixels, bits)
    if per_image is not None and len(per_image) != pixels.shape[0]:
        raise ValueError(f"per_image has {len(per_image)} entries for {pixels.shape[0]} images.")
    if multiframe and geometry:
        raise ValueError("Multi-frame Secondary Capture carries no slice positions: write volumes as a "
                         "series (multiframe=False) or as NIfTI.")
    if geometry is None:
        geometry = not multiframe and not np.allclose(volume.affine, np.eye(4))
    study = study or SyntheticStudy()
    study.series_count += 1
    series_uid = generate_uid()
    if modality is not None and not (isinstance(modality, str) and modality.isalnum() and modality.isupper()
                                     and len(modality) <= 16):
        raise ValueError(f"Modality {modality!r} is not a DICOM defined term (e.g. DX, CR, MR, US, OT).")
    with atomic_directory(out, overwrite=overwrite) as tmp:
        if multiframe:
            ds = _multiframe_dataset(q, bits, volume.rgb, _base_dataset(
                study, series_uid, study.series_count, description or "images",
                {**(provenance or {}), **_compact_per_image(per_image)}))
            (tmp / "IMG00001.dcm").write_bytes(_file_bytes(ds))
        else:
            for index, ds in enumerate(_slice_datasets(volume, q, bits, study, series_uid, description,
                                                       provenance, geometry, per_image, modality=modality,
                                                       pixel_spacing=pixel_spacing, window=window)):
                (tmp / f"IMG{index + 1:05d}.dcm").write_bytes(_file_bytes(ds))
        if sidecar is not None:
            (tmp / "provenance.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str)
                                                 + "\n", encoding="utf-8")
    return Path(out)


def _slice_datasets(volume: Volume, q: Quantized, bits: int, study: SyntheticStudy, series_uid: str,
                    description: str, provenance: dict[str, Any] | None, geometry: bool,
                    per_image: Sequence[dict[str, Any]] | None, modality: str | None = None,
                    pixel_spacing: tuple[float, float] | None = None,
                    window: tuple[float, float] | None = None):
    """One single-frame synthetic Secondary Capture dataset per slice of ``volume`` (``q``: its pixels
    quantised), with per-slice geometry when ``geometry``; ``modality``, ``pixel_spacing`` and ``window``
    as in :func:`write_dicom_series`."""
    frame_of_reference = generate_uid()
    rows_dir = volume.affine[:3, 0] / (np.linalg.norm(volume.affine[:3, 0]) or 1.0)
    cols_dir = volume.affine[:3, 1] / (np.linalg.norm(volume.affine[:3, 1]) or 1.0)
    z_spacing, row_spacing, column_spacing = volume.spacing
    for index in range(volume.pixels.shape[0]):
        image_provenance = {**(provenance or {}), **(per_image[index] if per_image else {})}
        ds = _base_dataset(study, series_uid, study.series_count, description or "images", image_provenance)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        _pixel_module(ds, q.stored[index], volume.rgb)
        if not volume.rgb and (q.slope != 1.0 or q.intercept != 0.0 or bits == 16):
            ds.RescaleIntercept = q.intercept_text
            ds.RescaleSlope = q.slope_text
            ds.RescaleType = volume.units if volume.units in ("HU",) else "US"
        if modality:
            ds.Modality = modality
        if window is not None and not volume.rgb:
            ds.WindowCenter = _ds_str(window[0])
            ds.WindowWidth = _ds_str(window[1])
            ds.VOILUTFunction = "LINEAR"
        if pixel_spacing is not None and not geometry:
            ds.PixelSpacing = [_ds_str(pixel_spacing[0]), _ds_str(pixel_spacing[1])]
        if geometry:
            position = volume.affine @ np.array([0.0, 0.0, float(index), 1.0])
            ds.FrameOfReferenceUID = frame_of_reference
            ds.PositionReferenceIndicator = ""
            ds.ImagePositionPatient = [_ds_str(v) for v in position[:3]]
            ds.ImageOrientationPatient = [_ds_str(v) for v in (*rows_dir, *cols_dir)]
            ds.PixelSpacing = [_ds_str(row_spacing), _ds_str(column_spacing)]
            ds.SliceThickness = _ds_str(z_spacing)
            ds.SpacingBetweenSlices = _ds_str(z_spacing)
            ds.SliceLocation = _ds_str(float(np.dot(position[:3], np.cross(rows_dir, cols_dir))))
        yield ds


def write_enhanced_dicom(volume: Volume, path: str | Path, *, description: str = "",
                         provenance: dict[str, Any] | None = None, study: SyntheticStudy | None = None,
                         overwrite: bool = False) -> Path:
    """Write a synthetic grey ``volume`` (Z, Y, X) as ONE Enhanced multi-frame DICOM file (``path``).

    The single-frame slices (with their geometry) are converted by ``highdicom`` into a Legacy Converted
    Enhanced CT Image (values in HU) or MR Image (anything else): per-frame Plane Position, shared Plane
    Orientation and Pixel Measures, one Frame of Reference. It carries the same synthetic markings as the
    series (patient ``SYNTHETIC^MEDSYN``, ``SYNTHETIC`` description, provenance in ImageComments,
    DERIVED\\SECONDARY). 16-bit pixels with rescale slope/intercept.
    """
    from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedMRImage
    from pydicom.uid import CTImageStorage, MRImageStorage

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another file name or remove it first.")
    if volume.is_4d or volume.rgb:
        raise ValueError("Enhanced multi-frame export takes one grey 3D volume (Z, Y, X).")
    if volume.pixels.shape[0] < 2:
        raise ValueError("Enhanced multi-frame export needs a volume of at least two slices; write a single "
                         "image as a series instead.")
    ct = volume.units == "HU" or volume.modality == "CT"
    q = quantize(volume.pixels, 16)
    study = study or SyntheticStudy()
    study.series_count += 1
    series_uid = generate_uid()
    frames = []
    for ds in _slice_datasets(volume, q, 16, study, series_uid, description, provenance, True, None):
        ds.SOPClassUID = CTImageStorage if ct else MRImageStorage
        ds.Modality = "CT" if ct else "MR"
        ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL"]  # enhanced IODs allow only PRIMARY as value 2
        ds.RescaleType = "HU" if ct else "US"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        frames.append(ds)
    converter = LegacyConvertedEnhancedCTImage if ct else LegacyConvertedEnhancedMRImage
    enhanced = converter(frames, series_uid, study.series_count, generate_uid(), 1)
    # the single-frame slices existed only in memory: no reference to them may remain
    for keyword in ("ReferencedSeriesSequence", "SourceImageSequence", "ReferencedImageEvidenceSequence"):
        if keyword in enhanced:
            delattr(enhanced, keyword)
    enhanced.Laterality = ""  # type 2C, empty = unknown (as in the series)
    enhanced.ImageType = ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
    enhanced.BurnedInAnnotation = "NO"
    enhanced.PatientIdentityRemoved = "YES"
    enhanced.DeidentificationMethod = frames[0].DeidentificationMethod
    enhanced.ImageComments = frames[0].ImageComments
    enhanced.SeriesDescription = frames[0].SeriesDescription
    enhanced.Manufacturer = MANUFACTURER
    import io

    buf = io.BytesIO()
    enhanced.save_as(buf, enforce_file_format=True)
    return atomic_write_bytes(path, buf.getvalue())


def _compact_per_image(per_image: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    """Per-frame entries for one multi-frame file's ImageComments, if they fit (LT holds 10240 chars)."""
    if not per_image:
        return {}
    text = json.dumps(list(per_image), default=str)
    return {"frames": list(per_image)} if len(text) < 8000 else {"frames": "see provenance.json"}


def _multiframe_dataset(q: Quantized, bits: int, rgb: bool, ds: Dataset) -> Dataset:
    """One multi-frame SC instance (PS3.3 A.8.2-A.8.5) holding every image of ``q`` as a frame."""
    stored = q.stored
    if rgb:
        ds.SOPClassUID = MultiFrameTrueColorSecondaryCaptureImageStorage
    elif bits == 8:
        if q.slope != 1.0 or q.intercept != 0.0:
            raise ValueError("8-bit multi-frame Secondary Capture cannot rescale values: give uint8 pixels "
                             "or use bits=16.")
        ds.SOPClassUID = MultiFrameGrayscaleByteSecondaryCaptureImageStorage
    else:
        ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
        if stored.dtype == np.int16:  # this class stores unsigned words: shift by the intercept
            stored = (stored.astype(np.int32) + 32768).astype(np.uint16)
            q = Quantized(stored, q.slope, q.intercept - 32768 * q.slope, q.slope_text,
                          _ds_str(q.intercept - 32768 * q.slope))
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    _pixel_module(ds, stored[0], rgb)
    ds.NumberOfFrames = int(stored.shape[0])
    ds.FrameIncrementPointer = 0x00182001  # Page Number Vector: frames are pages, not time
    ds.PageNumberVector = list(range(1, stored.shape[0] + 1))
    if not rgb:
        ds.RescaleIntercept = q.intercept_text
        ds.RescaleSlope = q.slope_text
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "IDENTITY"
    ds.PixelData = np.ascontiguousarray(stored.astype(stored.dtype.newbyteorder("<"))).tobytes()
    return ds


def zip_folder(folder: str | Path) -> Path:
    """Zip ``folder`` (e.g. a synthetic study for download) into ``<folder>.zip`` beside it, atomically;
    paths inside the archive start with the folder's name."""
    import io

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; nothing to zip.")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
    return atomic_write_bytes(folder.with_name(folder.name + ".zip"), buf.getvalue())
