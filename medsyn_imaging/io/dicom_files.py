"""Reading one DICOM file with readable errors (shared by the reader and the de-identifier).

Hostile files: the bytes are read through :func:`medsyn_core.files.open_untrusted` (no crafted length can
make pydicom allocate more than the file holds), and sequences nested deeper than
:data:`~medsyn_core.limits.MAX_DICOM_DEPTH` are refused right after parsing (a loop, never recursion).
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError

from medsyn_core.files import open_untrusted
from medsyn_core.limits import MAX_DICOM_DEPTH, InputLimitError, error_detail


class DicomReadError(ValueError):
    """A DICOM file or series cannot be read; the message names the file and says what to do."""


class DicomLimitError(DicomReadError, InputLimitError):
    """A DICOM file exceeds a resource limit (nesting depth, image size); it is skipped like a bad file."""


#: What pydicom raises for damaged or crafted bytes (besides InvalidDicomError).
_PARSE_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                 OverflowError, LookupError, NotImplementedError, struct.error, BytesLengthException)
#: What header values of the wrong type, length or VR raise when pydicom converts them on access.
_HEADER_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError, LookupError,
                  NotImplementedError, struct.error, BytesLengthException)


def _dcmread(path: Path, **kwargs) -> Dataset:
    """``pydicom.dcmread`` from a reader that cannot be made to allocate more than the file holds."""
    with open_untrusted(path) as fh:
        ds = pydicom.dcmread(fh, **kwargs)
    ds.filename = str(path)  # as when reading from the path (FileSet needs it for a DICOMDIR)
    return ds


def read_dataset(path: Path, stop_before_pixels: bool = False) -> Dataset:
    """``pydicom.dcmread`` with readable errors. Files without the 128-byte preamble are accepted when
    they parse as DICOM (they must carry a SOPClassUID or pixel data)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = _dcmread(path, stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                ds = _dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
                if "SOPClassUID" not in ds and "PixelData" not in ds:
                    raise
            check_sequence_depth(ds, path.name)
    except DicomReadError:
        raise
    except InvalidDicomError as exc:
        raise DicomReadError(f"{path.name} is not a DICOM file; it was skipped. Remove it from the "
                             "folder or convert it to DICOM.") from exc
    except RecursionError:
        raise DicomLimitError(f"{path.name} nests its sequences too deeply to be read safely; it was "
                              "skipped.") from None
    except _PARSE_ERRORS as exc:
        raise DicomReadError(f"{path.name} could not be parsed as DICOM ({error_detail(exc, path)}); "
                             "it is probably truncated or corrupted. Copy it again from the source.") from exc
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # Files written without meta information: the transfer syntax is the encoding pydicom parsed.
        ds.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
        implicit, little = getattr(ds, "original_encoding", (ds.is_implicit_VR, True))
        ds.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit
                                          else pydicom.uid.ExplicitVRLittleEndian if little is not False
                                          else pydicom.uid.ExplicitVRBigEndian)
    return ds


def _may_be_sequence(raw) -> bool:
    """Whether pydicom would parse this (raw or converted) element as a sequence: VR SQ, or a VR that is
    unknown / UN where pydicom decides on conversion (e.g. undefined length)."""
    vr = raw.VR
    if vr is None:  # implicit VR: the dictionary's VR
        try:
            vr = dictionary_VR(raw.tag)
        except KeyError:
            return True
    return vr in ("SQ", "UN") or getattr(raw, "length", 0) == 0xFFFFFFFF


def check_sequence_depth(ds: Dataset, name: str) -> None:
    """Refuse a dataset whose sequences nest deeper than :data:`MAX_DICOM_DEPTH` (a loop, not recursion:
    each item is parsed by pydicom only when this walk reaches it)."""
    limit = MAX_DICOM_DEPTH.value()
    stack = [(ds, 0)]
    while stack:
        item, depth = stack.pop()
        for raw in item.elements():  # raw elements: only possible sequences are converted (parsed)
            if not _may_be_sequence(raw):
                continue
            elem = item[raw.tag]
            if elem.VR == "SQ" and elem.value:
                if depth + 1 > limit:
                    where = elem.keyword or str(elem.tag)
                    raise DicomLimitError(
                        f"{name}: its sequences are nested more than {limit} levels deep (at {where}); real "
                        "images never are, so it was skipped. If the file is genuine, an administrator can "
                        f"raise the limit with {MAX_DICOM_DEPTH.env}.")
                stack.extend((child, depth + 1) for child in elem.value)
