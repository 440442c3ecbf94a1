"""Opening user inputs: uploads (DICOM files, zip, NIfTI, PNG) and paths; the `medsyn dicom` CLI."""

import io
import zipfile

import nibabel as nib
import numpy as np
import pytest

from medsyn_cli.main import main
from medsyn_imaging.io.datasets import bundled_dicom_series_dir
from medsyn_imaging.io.image_io import png_bytes
from medsyn_imaging.io.sources import load_path, load_uploaded

GE_FILES = sorted(bundled_dicom_series_dir().glob("*.dcm"))


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_upload_of_a_dicom_zip_pngs_and_a_bad_file():
    study = _zip({f"study/{p.name}": p.read_bytes() for p in GE_FILES})
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    result = load_uploaded([("study.zip", study), ("a.png", png_bytes(grey)), ("b.png", png_bytes(grey.T)),
                            ("scan.dcm", b"garbage" * 30)])
    shapes = sorted(v.pixels.shape for v in result.volumes)
    assert shapes == [(2, 8, 8), (10, 15, 64, 64)]
    assert [(p.path, "not a DICOM file" in p.message) for p in result.problems] == [("scan.dcm", True)]
    dicom = next(v for v in result.volumes if v.is_4d)
    assert dicom.metadata["PatientIdentityRemoved"] == "YES"


def test_zip_with_unsafe_paths_is_refused(tmp_path):
    result = load_uploaded([("evil.zip", _zip({"../../etc/x.dcm": GE_FILES[0].read_bytes()}))])
    assert result.volumes == [] and "unsafe path" in result.problems[0].message
    assert not (tmp_path.parent / "etc").exists()


def test_load_path_handles_nifti_folder_and_file(shared_data):
    folder = shared_data / "nifti" / "dcm_qa_nih_ref"
    result = load_path(folder)
    assert [v.pixels.shape for v in result.volumes] == [(10, 15, 64, 64)] and result.problems == []
    with pytest.raises(FileNotFoundError):
        load_path(folder / "missing.nii")


def test_cli_info_and_to_nifti(tmp_path, capsys):
    assert main(["dicom", "info", str(bundled_dicom_series_dir())]) == 0
    out = capsys.readouterr().out
    assert "10x15x64x64 int16" in out and "PatientIdentityRemoved: 'YES'" in out
    assert "Test^Regression" not in out
    target = tmp_path / "fmri.nii.gz"
    assert main(["dicom", "to-nifti", str(bundled_dicom_series_dir()), str(target)]) == 0
    assert nib.load(target).shape == (64, 64, 15, 10)
    assert main(["dicom", "to-nifti", str(bundled_dicom_series_dir()), str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["dicom", "info", str(tmp_path / "nope")]) == 2


def test_a_dicom_file_uploaded_twice_is_read_once():
    """Issue 19: uploading a series again together with one of its files gave 'series incomplete or mixes
    acquisitions'; duplicates (same SOPInstanceUID) are now read once and the user is told."""
    from medsyn_core.settings import DATA_DIR
    from medsyn_imaging.io.sources import load_uploaded

    files = sorted((DATA_DIR / "dicom" / "ge_mr_fmri").glob("*.dcm"))
    uploaded = [(f.name, f.read_bytes()) for f in files]
    uploaded.append(("copy-of-" + files[3].name, files[3].read_bytes()))
    result = load_uploaded(uploaded)
    assert len(result.volumes) == 1 and result.volumes[0].pixels.shape[:2] == (10, 15)
    assert [p.message for p in result.problems] == [
        "1 file(s) repeat an image already read (same SOPInstanceUID) and were read once."]
