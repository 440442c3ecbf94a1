"""Reading one DICOM file with readable errors (shared by the reader and the de-identifier)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError


class DicomReadError(ValueError):
    """A DICOM file or series cannot be read; the message names the file and says what to do."""


def read_dataset(path: Path, stop_before_pixels: bool = False) -> Dataset:
    """``pydicom.dcmread`` with readable errors. Files without the 128-byte preamble are accepted when
    they parse as DICOM (they must carry a SOPClassUID or pixel data)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
                if "SOPClassUID" not in ds and "PixelData" not in ds:
                    raise
    except InvalidDicomError as exc:
        raise DicomReadError(f"{path.name} is not a DICOM file; it was skipped. Remove it from the "
                             "folder or convert it to DICOM.") from exc
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DicomReadError(f"{path.name} could not be parsed as DICOM ({type(exc).__name__}: {exc}); "
                             "it is probably truncated or corrupted. Copy it again from the source.") from exc
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # Files written without meta information: the transfer syntax is the encoding pydicom parsed.
        ds.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
        implicit, little = getattr(ds, "original_encoding", (ds.is_implicit_VR, True))
        ds.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit
                                          else pydicom.uid.ExplicitVRLittleEndian if little is not False
                                          else pydicom.uid.ExplicitVRBigEndian)
    return ds
