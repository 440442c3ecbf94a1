"""Builders of small hostile files for the tests (tests/test_hostile_inputs.py, tests/test_fuzz_readers.py).

Each builder makes the file the way an attacker would: a valid container whose header claims far more
than it holds, a zip whose member unpacks ~1000 times, sequences nested thousands of levels deep, ...
"""

from __future__ import annotations

import gzip
import io
import struct
import sys
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def nifti_header_only(shape: tuple[int, ...], dtype=np.int16, compressed: bool = True) -> bytes:
    """A NIfTI-1 file holding only a header that claims ``shape`` (plus the 4-byte extension flag)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    buf = io.BytesIO()
    header.write_to(buf)
    buf.write(b"\0" * 4)
    return gzip.compress(buf.getvalue(), mtime=0) if compressed else buf.getvalue()


def small_nifti(compressed: bool = True, shape=(6, 5, 4), dtype=np.int16) -> bytes:
    """A real small NIfTI image (``.nii.gz`` bytes when ``compressed``)."""
    data = (np.arange(int(np.prod(shape))) % 97).astype(dtype).reshape(shape)
    raw = nib.Nifti1Image(data, np.eye(4)).to_bytes()
    return gzip.compress(raw, mtime=0) if compressed else raw


def zip_of_zeros(n_bytes: int, name: str = "study/scan.dcm", declared: int | None = None) -> bytes:
    """A zip (deflate, level 9) with one member of ``n_bytes`` zeros, built block by block; its headers
    claim ``declared`` bytes (default: the truth) with the matching CRC.

    zlib's full flush makes every 1 MiB block of zeros compress to the same bytes, so a 1 GiB member
    costs one block's compression instead of 6 s of deflate; ``zipfile`` cannot take pre-compressed data,
    so the (standard, non-zip64) headers are written here.
    """
    block = 1 << 20
    assert n_bytes % block == 0 and n_bytes < 2**32
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(bytes(block)) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(bytes(block)) + comp.flush(zlib.Z_FULL_FLUSH)
    assert first == again
    data = first * (n_bytes // block) + comp.flush()
    declared = n_bytes if declared is None else declared
    crc = 0
    for _ in range(declared // block):
        crc = zlib.crc32(bytes(block), crc)
    crc = zlib.crc32(bytes(declared % block), crc)
    encoded = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), declared,
                        len(encoded), 0) + encoded
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), declared,
                          len(encoded), 0, 0, 0, 0, 0, 0) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return local + data + central + end


def nested_dicom_bytes(depth: int, defined_lengths: bool = False) -> bytes:
    """A tiny valid image whose ContentSequence nests ``depth`` levels deep, written as an attacker writes
    it (explicit VR little endian; pydicom's writer takes ~15 s for 2000 levels).

    With undefined lengths (delimiters), pydicom parses the nesting while reading the file; with defined
    lengths it keeps each sequence as raw bytes until it is accessed.
    """
    plain = dicom_bytes(tiny_dicom())
    nested = struct.pack("<HH2sH", 0x0008, 0x0100, b"SH", 2) + b"X "  # CodeValue "X"
    if defined_lengths:
        for _ in range(depth):
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(nested)) + nested
            nested = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, len(item)) + item
    else:
        sequence = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
        item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        ends = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        nested = (sequence + item) * depth + nested + ends * depth
    pixel_data = plain.rindex(struct.pack("<HH", 0x7FE0, 0x0010))  # (0040,A730) sorts just before it
    return plain[:pixel_data] + nested + plain[pixel_data:]


def tiny_dicom(rows: int = 4, columns: int = 4, frames: int | None = None, depth: int = 0) -> Dataset:
    """A valid 8-bit Secondary Capture dataset with ``depth`` levels of nested ContentSequence."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "OT", generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    n = frames or 1
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.PixelData = (np.arange(rows * columns * n) % 251).astype(np.uint8).tobytes()
    if depth:
        inner = Dataset()
        inner.CodeValue = "X"
        for _ in range(depth - 1):
            outer = Dataset()
            outer.ContentSequence = Sequence([inner])
            inner = outer
        ds.ContentSequence = Sequence([inner])
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    """The file bytes of ``ds`` (deeply nested datasets need a higher recursion limit to write)."""
    buf = io.BytesIO()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 100_000))
    try:
        ds.save_as(buf, enforce_file_format=True)
    finally:
        sys.setrecursionlimit(limit)
    return buf.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR is rewritten (CRC fixed) to claim ``width`` x ``height`` pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17]))
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def small_png(seed: int = 0, size=(8, 8)) -> bytes:
    from PIL import Image

    pixels = (np.random.default_rng(seed).random(size) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def dicomdir_escaping_its_folder(folder: Path) -> Path:
    """pydicom's test DICOMDIR copied into ``folder`` with one record's ReferencedFileID rewritten to
    ``../../../secr/X`` (same length, so every record offset stays valid); returns the DICOMDIR path."""
    import shutil

    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("DICOMDIR")).parent
    shutil.copytree(source, folder)
    dicomdir = folder / "DICOMDIR"
    raw = dicomdir.read_bytes()
    old = b"98892003\\MR2\\6935"
    assert raw.count(old) == 1
    dicomdir.write_bytes(raw.replace(old, b"..\\..\\..\\secr\\X".ljust(len(old), b" ")))
    pydicom.dcmread(dicomdir)  # still a well-formed DICOM file
    return dicomdir
