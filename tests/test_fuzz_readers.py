"""Fuzzing the readers of untrusted files with Hypothesis: random bytes, and valid small files with
mutated headers, sizes and bytes.

For every example: only ``ValueError`` (``TableReadError``, ``DicomReadError``, ``InputLimitError``, ...)
may escape, and its message names no server path; the peak traced allocation stays bounded; nothing is
left in the system temp folder or in ``$MEDSYN_HOME/tmp``. The default suite runs 40 examples per
reader; ``make test-slow`` runs 2,000. Each test prints the largest peak it saw (``pytest -s``).
"""

from __future__ import annotations

import gzip
import io
import struct
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hostile_files import (
    dicom_bytes,
    nested_dicom_bytes,
    nifti_header_only,
    png_with_size,
    small_nifti,
    small_png,
    tiny_dicom,
    zip_of_zeros,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from medsyn_imaging.io.dicom_read import read_dicom_file
from medsyn_imaging.io.image_io import read_image
from medsyn_imaging.io.nifti_io import read_nifti
from medsyn_imaging.io.sources import load_path, load_uploaded
from medsyn_tabular.data.io import read_table

# Pillow warns about images between its limit and twice it; MedSyn refuses them (checked here)
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
MiB = 2**20
#: Peak traced allocation allowed for one example (the seeds are a few kB; the limits refuse big claims).
PEAK_LIMIT = 64 * MiB
FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=2000, derandomize=False)  # new examples on every run


# -- seeds: small valid files --------------------------------------------------------------------------------
def _csv_seed() -> bytes:
    return b"age,sex,chol,thal,zip\n63,1,233,fixed,02139\n37,0,250,normal,10001\n41,?,204,,94110\n"


def _zip_seed() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("study/a.dcm", dicom_bytes(tiny_dicom()))
        zf.writestr("study/b.png", small_png())
        zf.writestr("study/c.nii.gz", small_nifti())
    return buf.getvalue()


def _jpeg_seed() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).save(buf, format="JPEG")
    return buf.getvalue()


SEEDS = {
    "csv": [_csv_seed()],
    "dicom": [dicom_bytes(tiny_dicom()), dicom_bytes(tiny_dicom(frames=2)),
              nested_dicom_bytes(3, defined_lengths=True), nested_dicom_bytes(3)],
    "nifti": [small_nifti(True), small_nifti(False)],
    "png": [small_png(), _jpeg_seed()],
    "zip": [_zip_seed()],
}


#: Known hostile files, always run besides the generated examples.
HOSTILE = {
    "csv": [b"a" * 200_000 + b",b\n1,2\n", b",".join(b"c%d" % i for i in range(3000)) + b"\n"],
    "dicom": [nested_dicom_bytes(3000), nested_dicom_bytes(500, defined_lengths=True),
              b"\0" * 6 + b"\xfe\xff"],  # an element length of ~4 GiB in an 8-byte file
    "nifti": [nifti_header_only((2000, 2000, 500)), nifti_header_only((500, 500, 400), compressed=False)],
    "png": [png_with_size(30000, 30000), png_with_size(9000, 9000)],
    "zip": [zip_of_zeros(64 * MiB)],
}


def with_examples(kind: str):
    """Run each seed (the happy path, under the same checks) and each known hostile file of ``kind``."""
    def decorate(test):
        for data in SEEDS[kind] + HOSTILE[kind]:
            test = example(data=data)(test)
        return test
    return decorate


# -- mutations -----------------------------------------------------------------------------------------------
_BIG = st.sampled_from([0, 1, 2, 255, 256, 65535, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**40, 2**63 - 1])
_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 64)),
    # a size/count/dimension field: overwrite 2, 4 or 8 bytes with an extreme little- or big-endian number
    st.tuples(st.just("number"), st.integers(0, 10**6),
              st.tuples(st.sampled_from(["<H", "<I", "<Q", ">H", ">I", ">Q"]), _BIG)),
)


def _mutate(seed: bytes, mutations) -> bytes:
    data = bytearray(seed)
    for kind, where, what in mutations:
        at = where % (len(data) + 1)
        if kind == "flip" and data:
            data[at % len(data)] = what
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = what
        elif kind == "delete":
            del data[at:at + what]
        elif kind == "number":
            fmt, value = what
            size = struct.calcsize(fmt)
            data[at:at + size] = struct.pack(fmt, value % (1 << (8 * size)))
    return bytes(data)


def inputs(kind: str):
    """Random bytes, or a seed of ``kind`` with 1-6 mutations (and for NIfTI, mutated header fields)."""
    mutated = st.builds(_mutate, st.sampled_from(SEEDS[kind]), st.lists(_mutation, min_size=1, max_size=6))
    return st.one_of(st.binary(max_size=4096), mutated, mutated, mutated)


def _nifti_with_fields():
    """A valid NIfTI with extreme values in the fields that decide sizes (dims, datatype, offset)."""
    fields = st.fixed_dictionaries({
        "dim": st.lists(st.integers(-2, 2**15 - 1), min_size=8, max_size=8),
        "datatype": st.sampled_from([2, 4, 8, 16, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2304,
                                     0, 7, 9999]),
        "vox_offset": st.sampled_from([0.0, 100.0, 352.0, 356.0, 368.0, 1e6, 3e9, -5.0]),
        "extension_size": st.one_of(st.none(), st.sampled_from([-8, 0, 4, 8, 16, 32, 2**31 - 1])),
        "compressed": st.booleans(),
    })

    def build(f):
        import nibabel as nib

        raw = bytearray(small_nifti(False))
        header = np.frombuffer(bytes(raw[:348]), dtype=nib.Nifti1Header.template_dtype).copy()
        header["dim"] = f["dim"]
        header["datatype"] = f["datatype"]
        header["vox_offset"] = f["vox_offset"]
        raw[:348] = header.tobytes()
        if f["extension_size"] is not None:  # one 16-byte extension whose size field is mutated
            raw[348:352] = b"\1\0\0\0"
            raw[352:352] = struct.pack("<ii", f["extension_size"], 6) + bytes(8)
        return gzip.compress(bytes(raw), mtime=0) if f["compressed"] else bytes(raw)

    return st.builds(build, fields)


# -- the check run on every example --------------------------------------------------------------------------
PEAKS: dict[str, int] = {}


@pytest.fixture
def sandbox(tmp_path, medsyn_home, monkeypatch):
    """(work folder, checker): the checker runs a read, allowing only ValueError out, and checks memory,
    messages and temp folders."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    work = tmp_path / "work"
    work.mkdir()
    server_paths = [str(tmp_path), str(medsyn_home)]

    def check(reader: str, read, given: Path | None = None) -> None:
        """``given``: the path the caller passed (a CLI user's own path may be named in messages)."""
        tracemalloc.start()
        messages = []
        try:
            result = read()
            messages = [p.message for p in getattr(result, "problems", [])]  # skipped inputs, shown
        except ValueError as exc:  # the documented, readable errors
            messages = [str(exc)]
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        for message in messages:
            shown = message.replace(str(given), given.name) if given is not None else message
            assert message and not any(p in shown for p in server_paths), message
        PEAKS[reader] = max(PEAKS.get(reader, 0), peak)
        assert peak < PEAK_LIMIT, f"{reader}: peak allocation {peak / MiB:.1f} MiB"
        assert list(system_tmp.iterdir()) == []
        assert not (medsyn_home / "tmp").exists() or list((medsyn_home / "tmp").iterdir()) == []

    yield work, check
    print("\npeak traced allocation per example so far: "
          + ", ".join(f"{k} {v / MiB:.2f} MiB" for k, v in sorted(PEAKS.items())))


def _write(work: Path, name: str, data: bytes) -> Path:
    path = work / name
    path.write_bytes(data)
    return path


def _check_csv(sandbox, data):
    work, check = sandbox
    check("csv", lambda: read_table(data, name="upload.csv"))
    path = _write(work, "table.csv", data)
    check("csv", lambda: read_table(path), given=path)


def _check_dicom(sandbox, data):
    work, check = sandbox
    path = _write(work, "image.dcm", data)
    check("dicom", lambda: read_dicom_file(path))


def _check_nifti(sandbox, data):
    work, check = sandbox
    gz = data[:2] == b"\x1f\x8b"
    path = _write(work, "volume.nii.gz" if gz else "volume.nii", data)
    check("nifti", lambda: read_nifti(path))


def _check_png(sandbox, data):
    work, check = sandbox
    path = _write(work, "image.png", data)
    check("png", lambda: read_image(path))


def _check_zip(sandbox, data):
    work, check = sandbox
    check("zip", lambda: load_uploaded([("study.zip", data)]))
    path = _write(work, "study.zip", data)
    check("zip", lambda: load_path(path), given=path)


@with_examples("csv")
@FAST
@given(data=inputs("csv"))
def test_fuzz_read_table(sandbox, data):
    _check_csv(sandbox, data)


@with_examples("dicom")
@FAST
@given(data=inputs("dicom"))
def test_fuzz_read_dicom_file(sandbox, data):
    _check_dicom(sandbox, data)


@with_examples("nifti")
@FAST
@given(data=st.one_of(inputs("nifti"), _nifti_with_fields()))
def test_fuzz_read_nifti(sandbox, data):
    _check_nifti(sandbox, data)


@with_examples("png")
@FAST
@given(data=inputs("png"))
def test_fuzz_read_png_and_jpeg(sandbox, data):
    _check_png(sandbox, data)


@with_examples("zip")
@FAST
@given(data=inputs("zip"))
def test_fuzz_zip_uploads(sandbox, data):
    _check_zip(sandbox, data)


@pytest.mark.slow
@SLOW
@given(kind=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_fuzz_all_readers_long(sandbox, kind, data):
    strategy = st.one_of(inputs("nifti"), _nifti_with_fields()) if kind == "nifti" else inputs(kind)
    value = data.draw(strategy)
    {"csv": _check_csv, "dicom": _check_dicom, "nifti": _check_nifti, "png": _check_png,
     "zip": _check_zip}[kind](sandbox, value)
