"""Issue 20 (items 4 and 8-readers): each attack an auditor ran with crafted files, written as the attack.

On the old code these exhausted memory (GBs for a 60-byte NIfTI or a 1 MB zip), wrote a GiB to the
system temp folder, or showed tracebacks with server paths. Now each is refused before allocation with
a readable one-line error (``InputLimitError`` / ``ValueError``) and leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hostile_files import (
    dicom_bytes,
    dicomdir_escaping_its_folder,
    nested_dicom_bytes,
    nifti_header_only,
    png_with_size,
    small_png,
    tiny_dicom,
    zip_of_zeros,
)
from tabular_helpers import one_torch_thread

from medsyn_cli.main import main
from medsyn_core.archives import extract_zip
from medsyn_core.limits import InputLimitError
from medsyn_imaging.io.dicom_read import DicomLimitError, DicomReadError, read_dicom_file, read_dicomdir
from medsyn_imaging.io.image_io import read_image
from medsyn_imaging.io.nifti_io import read_nifti
from medsyn_imaging.io.sources import load_path, load_uploaded
from medsyn_tabular.data import review
from medsyn_tabular.data.io import read_table

MiB = 2**20
ROOT = Path(__file__).resolve().parents[1]


class Peak:
    """Time and peak traced allocation (tracemalloc: Python objects and numpy arrays) of a block."""

    def __enter__(self):
        tracemalloc.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return False


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("medsyn: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def system_tmp(tmp_path, monkeypatch) -> Path:
    """The system temp folder for this test (so that 'nothing was written there' can be checked)."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _left_in(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*")]


# -- NIfTI ---------------------------------------------------------------------------------------------------
def test_tiny_nifti_claiming_2000x2000x500_fails_fast_in_little_memory(tmp_path, capsys):
    path = tmp_path / "claims-4gb.nii.gz"
    path.write_bytes(nifti_header_only((2000, 2000, 500)))
    assert path.stat().st_size < 70
    with Peak() as peak, pytest.raises(InputLimitError, match=r"2,000,000,000 voxels.*MEDSYN_MAX_VOXELS"):
        read_nifti(path)
    assert peak.bytes < 5 * MiB and peak.seconds < 2, (peak.bytes, peak.seconds)  # old code: 3.9 GB
    # under the voxel limit but more than the file holds: refused from the header, nothing allocated
    path.write_bytes(nifti_header_only((500, 500, 400)))
    with Peak() as peak, pytest.raises(ValueError, match="truncated or crafted"):
        read_nifti(path)
    assert peak.bytes < 5 * MiB, peak.bytes
    assert main(["dicom", "info", str(path)]) == 2
    assert "claims-4gb.nii.gz is not a readable NIfTI" in _one_line_error(capsys)


def test_nifti_header_claiming_30000_cubed_is_a_readable_error_not_a_memory_error(tmp_path, capsys):
    path = tmp_path / "huge.nii"
    path.write_bytes(nifti_header_only((30000, 30000, 30000), compressed=False))
    with pytest.raises(InputLimitError, match="27,000,000,000,000 voxels"):
        read_nifti(path)
    result = load_uploaded([("huge.nii", path.read_bytes())])  # the Imaging page's path
    assert result.volumes == [] and "MEDSYN_MAX_VOXELS" in result.problems[0].message
    assert main(["dicom", "info", str(path)]) == 2
    assert "MEDSYN_MAX_VOXELS" in _one_line_error(capsys)


def test_nifti_that_decompresses_to_more_than_its_header_describes_is_refused(tmp_path):
    import gzip

    path = tmp_path / "padded.nii.gz"
    raw = gzip.decompress(nifti_header_only((4, 4, 4), dtype=np.uint8)) + bytes(64 + 8 * MiB)
    path.write_bytes(gzip.compress(raw))
    with Peak() as peak, pytest.raises(ValueError, match="decompresses to far more data"):
        read_nifti(path)
    assert peak.bytes < 4 * MiB, peak.bytes


# -- zip uploads ---------------------------------------------------------------------------------------------
def test_1_mb_zip_of_1_gib_zeros_is_refused_before_anything_is_unpacked(medsyn_home, system_tmp, tmp_path,
                                                                         monkeypatch):
    bomb = zip_of_zeros(2**30)
    assert len(bomb) < 1.1 * MiB
    with Peak() as peak:
        result = load_uploaded([("study.zip", bomb)])
    assert result.volumes == [] and len(result.problems) == 1
    message = result.problems[0].message
    assert "zip bomb" in message and "MEDSYN_MAX_ZIP_RATIO" in message and str(medsyn_home) not in message
    # old code: 2.1 GB of memory, 1 GiB written to the system temp folder, then > 300 s in pydicom
    assert peak.bytes < 4 * len(bomb) + 8 * MiB and peak.seconds < 5, (peak.bytes, peak.seconds)
    assert _left_in(system_tmp, medsyn_home / "tmp") == []
    # with the ratio limit lifted the total limit still refuses it, from the header, before unpacking
    monkeypatch.setenv("MEDSYN_MAX_ZIP_RATIO", "100000")
    monkeypatch.setenv("MEDSYN_MAX_UNZIPPED_BYTES", str(512 * MiB))
    path = tmp_path / "study.zip"
    path.write_bytes(bomb)
    with pytest.raises(InputLimitError, match="unpacked size in its header.*MEDSYN_MAX_UNZIPPED_BYTES"):
        load_path(path)
    assert _left_in(system_tmp, medsyn_home / "tmp") == []


def test_a_zip_header_that_understates_a_member_cannot_unpack_more_than_it_declares(tmp_path):
    archive = tmp_path / "liar.zip"
    archive.write_bytes(zip_of_zeros(64 * MiB, declared=MiB))  # 64 MiB inside, headers say 1 MiB
    written = extract_zip(archive, tmp_path / "out")
    assert [p.stat().st_size for p in written] == [MiB]


def test_zip_member_count_and_unsafe_names_are_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSYN_MAX_ZIP_MEMBERS", "10")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(11):
            zf.writestr(f"f{i}.dcm", b"x")
    archive = tmp_path / "many.zip"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(InputLimitError, match="11 files.*MEDSYN_MAX_ZIP_MEMBERS"):
        extract_zip(archive, tmp_path / "out")
    for name in ("/etc/x.dcm", "C:/x.dcm", "a/../../x.dcm"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("ok.dcm", b"x")
            zf.writestr(name, b"x")
        archive.write_bytes(buf.getvalue())
        with pytest.raises(ValueError, match="unsafe path"):
            extract_zip(archive, tmp_path / "out2")
        assert not (tmp_path / "out2").exists()


# -- DICOM ---------------------------------------------------------------------------------------------------
def test_deeply_nested_dicom_sequences_are_refused_without_a_recursion_error(tmp_path, capsys, monkeypatch):
    lazy = nested_dicom_bytes(2000, defined_lengths=True)  # pydicom parses one level at a time
    eager = nested_dicom_bytes(5000)  # undefined lengths: pydicom's own parser recurses 5000 levels
    lazy_path, eager_path = tmp_path / "deep.dcm", tmp_path / "deeper.dcm"
    lazy_path.write_bytes(lazy)
    eager_path.write_bytes(eager)
    with pytest.raises(DicomLimitError, match="nested more than 32 levels.*MEDSYN_MAX_DICOM_DEPTH"):
        read_dicom_file(lazy_path)
    with pytest.raises(DicomLimitError, match="deeper.dcm nests its sequences too deeply"):
        read_dicom_file(eager_path)
    # in an upload each is one skipped file; the other image is still read; real nesting still reads
    result = load_uploaded([("deep.dcm", lazy), ("deeper.dcm", eager),
                            ("ok.dcm", nested_dicom_bytes(8, defined_lengths=True))])
    assert [v.pixels.shape for v in result.volumes] == [(1, 4, 4)]
    assert sorted((p.path, "nest" in p.message) for p in result.problems) == [("deep.dcm", True),
                                                                              ("deeper.dcm", True)]
    # with the limit lifted, de-identifying the 2000 levels would recurse too deep (old code: a
    # RecursionError traceback); the CLI still answers in one line
    monkeypatch.setenv("MEDSYN_MAX_DICOM_DEPTH", "100000")
    assert main(["dicom", "info", str(lazy_path)]) == 2
    assert "nested too deeply" in _one_line_error(capsys)


def test_dicom_pixel_size_is_checked_before_decoding(tmp_path, capsys, medsyn_home):
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    ds = tiny_dicom()  # uncompressed: header says 4000 x 4000, the file holds 16 bytes
    ds.Rows = ds.Columns = 4000
    path = tmp_path / "short.dcm"
    path.write_bytes(dicom_bytes(ds))
    with Peak() as peak, pytest.raises(DicomReadError, match="describes 16,000,000 bytes.*holds 16"):
        read_dicom_file(path)
    assert peak.bytes < 2 * MiB, peak.bytes
    # compressed (RLE): 60000 x 60000 x 2000 frames claimed by a 150 kB file
    ds = tiny_dicom()
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 2000
    segment_header = (1).to_bytes(4, "little") + (64).to_bytes(4, "little") + bytes(56)
    ds.PixelData = encapsulate([segment_header + b"\0\0"] * 2000)
    ds["PixelData"].VR = "OB"
    path = tmp_path / "rle-claim.dcm"
    path.write_bytes(dicom_bytes(ds))
    with Peak() as peak, pytest.raises(DicomLimitError, match="7,200,000,000,000 voxels"):
        read_dicom_file(path)
    assert peak.bytes < 8 * MiB, peak.bytes
    # with the voxel limit lifted, decoding runs out of memory: still one line and exit status 2
    env = {**os.environ, "MEDSYN_MAX_VOXELS": str(10**16), "MEDSYN_HOME": str(medsyn_home),
           "PYTHONPATH": str(ROOT)}
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (16 * 2**30, 16 * 2**30)); "
            "from medsyn_cli.main import main; sys.exit(main(['dicom', 'info', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "ran out of memory" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_dicomdir_pointing_outside_its_folder_is_refused(tmp_path, capsys):
    dicomdir = dicomdir_escaping_its_folder(tmp_path / "study")
    with pytest.raises(DicomReadError, match="refers to files outside its own folder"):
        read_dicomdir(dicomdir)
    assert main(["dicom", "info", str(dicomdir)]) == 2  # old code: PermissionError traceback
    assert "outside its own folder" in _one_line_error(capsys)
    buf = io.BytesIO()  # uploaded as a zip of the study folder
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted((tmp_path / "study").rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(tmp_path / "study"))  # DICOMDIR at the zip's top
    result = load_uploaded([("study.zip", buf.getvalue())])
    assert result.volumes == [] and result.problems[0].message.startswith(
        "The DICOMDIR in study.zip refers to files outside its own folder")


# -- PNG / JPEG ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow only warns; MedSyn refuses
def test_pil_decompression_bomb_is_a_readable_error(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_size(30000, 30000))  # Pillow: DecompressionBombError (old code: traceback)
    with pytest.raises(InputLimitError, match="bomb.png.*MEDSYN_MAX_IMAGE_PIXELS"):
        read_image(path)
    path.write_bytes(png_with_size(9000, 9000))  # between Pillow's warning and error: it would decode it
    with Peak() as peak, pytest.raises(InputLimitError, match="9000 x 9000 pixels"):
        read_image(path)
    assert peak.bytes < 2 * MiB, peak.bytes
    with pytest.raises(InputLimitError):
        load_uploaded([("bomb.png", path.read_bytes())])
    monkeypatch.setenv("MEDSYN_MAX_IMAGE_PIXELS", "1000")  # the limit is a setting
    path.write_bytes(small_png(size=(40, 40)))
    with pytest.raises(InputLimitError, match="1,600 pixels is more than MedSyn's limit of 1,000"):
        read_image(path)


def test_corrupt_png_is_a_readable_error_naming_the_file(tmp_path):
    good = small_png()
    for name, data in (("truncated.png", good[: len(good) // 2]), ("garbage.png", good[:16] + b"\xff" * 80),
                       ("notpng.png", b"%!PS-Adobe-3.0 EPSF-3.0\n")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=f"{name} is not a readable PNG/JPEG image"):
            read_image(path)


def test_imaging_train_on_a_folder_with_a_corrupt_png_names_the_file(tmp_path, capsys):
    root = tmp_path / "images"
    for cls in ("normal", "pneumonia"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(small_png(i))
    (root / "pneumonia" / "bad.png").write_bytes(small_png()[:40])
    out = tmp_path / "gen"
    assert main(["imaging", "train", str(root), "--kimg", "0.01", "--out", str(out), "--no-register"]) == 2
    err = _one_line_error(capsys)  # old code: UnidentifiedImageError traceback
    assert "pneumonia/bad.png is not a readable PNG/JPEG image" in err and str(tmp_path) not in err
    assert not out.exists()


# -- tables --------------------------------------------------------------------------------------------------
def test_tabular_sample_out_an_existing_folder_is_a_readable_error(shared_data, tmp_path, capsys):
    model = tmp_path / "model"
    with one_torch_thread():
        assert main(["tabular", "fit", str(shared_data / "tabular/heart.csv"), "--model", "tvae", "--epochs",
                     "1", "--batch-size", "100", "--quiet", "--out", str(model)]) == 0
    capsys.readouterr()
    folder = tmp_path / "existing"
    folder.mkdir()
    assert main(["tabular", "sample", str(model), "-n", "5", "--out", str(folder)]) == 2
    assert "is a folder; give the name of the CSV file" in _one_line_error(capsys)
    assert list(folder.iterdir()) == []


def test_20000_column_csv_is_refused_quickly(tmp_path, capsys):
    columns = 20_000
    data = (",".join(f"c{i}" for i in range(columns)) + "\n"
            + "\n".join(",".join(str((r + c) % 7) for c in range(columns)) for r in range(3)) + "\n").encode()
    with Peak() as peak, pytest.raises(InputLimitError, match="20,000 columns.*MEDSYN_MAX_TABLE_COLUMNS"):
        read_table(data, name="wide.csv")
    assert peak.seconds < 3, peak.seconds  # old code: parsed, then 16 s of schema/PHI on every rerun
    path = tmp_path / "wide.csv"
    path.write_bytes(data)
    assert main(["tabular", "schema", str(path)]) == 2
    assert "MEDSYN_MAX_TABLE_COLUMNS" in _one_line_error(capsys)


def test_schema_and_phi_review_of_a_wide_table_is_computed_once():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.integers(0, 50, (100, 1500)), columns=[f"lab_{i}" for i in range(1500)])
    df["patient_email"] = [f"p{i}@example.org" for i in range(100)]
    hits, misses = review.stats.hits, review.stats.misses
    schema, findings = review.review_table(df)  # ~0.3-0.5 s on the 2-core CI machine
    again_schema, again_findings = review.review_table(df.copy())  # same content, another object: ~0.05 s
    assert (review.stats.hits, review.stats.misses) == (hits + 1, misses + 1)  # inferred once, not twice
    assert again_schema.names == schema.names and again_findings == findings
    assert [f.column for f in findings] == ["patient_email"]
    again_schema.columns[0].kind = "drop"  # a caller's edit does not leak into the cache
    assert review.review_table(df)[0].columns[0].kind == schema.columns[0].kind


def test_table_size_cell_and_setting_errors_are_readable(shared_data, monkeypatch):
    heart = shared_data / "tabular/heart.csv"
    monkeypatch.setenv("MEDSYN_MAX_TABLE_CELLS", "1000")
    with pytest.raises(InputLimitError, match=r"rows x columns.*MEDSYN_MAX_TABLE_CELLS"):
        read_table(heart)
    monkeypatch.delenv("MEDSYN_MAX_TABLE_CELLS")
    monkeypatch.setenv("MEDSYN_MAX_TABLE_BYTES", "1000")
    with pytest.raises(InputLimitError, match="bytes is more than"):
        read_table(heart)
    with pytest.raises(InputLimitError):
        read_table(io.BytesIO(heart.read_bytes()), name="heart.csv")
    monkeypatch.setenv("MEDSYN_MAX_TABLE_BYTES", "lots")
    with pytest.raises(ValueError, match="MEDSYN_MAX_TABLE_BYTES must be a positive whole number"):
        read_table(heart)
