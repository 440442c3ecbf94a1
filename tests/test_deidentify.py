"""De-identification (PS3.15 Basic Profile): no identifier of the input survives, checked byte-wise."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel
import pydicom
import pytest
from deid_crafted import dciodvfy_errors
from pydicom.dataset import Dataset

from medsyn_cli.main import main
from medsyn_imaging.io.datasets import bundled_dicom_series_dir
from medsyn_imaging.io.deidentify import Deidentifier, burned_in_warning, deidentify_folder

GE_FILES = sorted(bundled_dicom_series_dir().glob("*.dcm"))
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "ReferringPhysicianName",
               "AccessionNumber")
CANARY = "PRIVATE-CANARY-7731"


def _identifiers_of(path: Path) -> set[bytes]:
    """Byte strings that must not appear in the output: identifying attributes and private values."""
    ds = pydicom.dcmread(path)
    found: set[bytes] = set()

    def walk(dataset: Dataset) -> None:
        for elem in dataset:
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)
                continue
            text = str(elem.value).strip() if elem.value is not None else ""
            if elem.keyword in IDENTIFYING and text:
                found.add(text.encode())
            if elem.tag.is_private and isinstance(elem.value, str) and len(text) >= 6:
                found.add(text.encode())

    walk(ds)
    return found


def _study_with_identifiers(tmp_path: Path) -> Path:
    """Real GE files (one time point) plus two copies carrying realistic identifiers and a private tag."""
    folder = tmp_path / "in"
    folder.mkdir()
    for path in GE_FILES[:15]:
        shutil.copy(path, folder / path.name)
    for i, path in enumerate(GE_FILES[15:17]):
        ds = pydicom.dcmread(path)
        ds.PatientName = "Doe^Jane^Q"
        ds.PatientID = "MRN-98765-X"
        ds.PatientBirthDate = "19450317"
        ds.InstitutionName = "Saint Example General Hospital"
        ds.ReferringPhysicianName = "Welby^Marcus"
        ds.AccessionNumber = "ACC-55501"
        block = ds.private_block(0x0011, "ACME_SECRET", create=True)
        block.add_new(0x01, "LO", CANARY)
        ds.OtherPatientIDs = "OLD-MRN-1122"
        ds.save_as(folder / f"tagged_{i}.dcm")
    return folder


def test_no_identifier_or_private_value_survives_bytewise(tmp_path):
    source = _study_with_identifiers(tmp_path)
    forbidden: set[bytes] = set()
    for path in source.iterdir():
        forbidden |= _identifiers_of(path)
    assert {b"Doe^Jane^Q", b"MRN-98765-X", b"19450317", b"Welby^Marcus", b"ACC-55501",
            CANARY.encode(), b"Test^Regression", b"NIH FMRIF"} <= forbidden
    report = deidentify_folder(source, tmp_path / "out")
    assert len(report.written) == 17 and report.problems == []
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaked = [value for value in forbidden if value in data]
            assert leaked == [], f"{path.name} still contains {leaked}"
            ds = pydicom.dcmread(path)
            assert ds.PatientIdentityRemoved == "YES"
            assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
            assert not any(elem.tag.is_private for elem in ds.iterall())
            assert "PatientBirthDate" not in ds or not ds.PatientBirthDate
    # output file names do not reuse input names (they can hold identifiers too)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.dcm"))[0] == "image-00001.dcm"


def test_uids_are_replaced_consistently_within_the_study(tmp_path):
    source = _study_with_identifiers(tmp_path)
    deidentify_folder(source, tmp_path / "out")
    originals = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(source.iterdir())]
    outputs = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((tmp_path / "out").rglob("*.dcm"))]
    old_uids = {str(d.StudyInstanceUID) for d in originals} | {str(d.SOPInstanceUID) for d in originals}
    assert len({d.StudyInstanceUID for d in outputs}) == 1
    assert len({d.SeriesInstanceUID for d in outputs}) == 1
    assert len({d.FrameOfReferenceUID for d in outputs}) == 1
    assert len({d.SOPInstanceUID for d in outputs}) == len(outputs)
    for d in outputs:
        assert str(d.StudyInstanceUID) not in old_uids and str(d.SOPInstanceUID) not in old_uids
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.SOPClassUID == originals[0].SOPClassUID  # standard UIDs are kept
    # same input UID -> same output UID within one Deidentifier; a new run gives new UIDs
    deid = Deidentifier()
    assert deid.new_uid("1.2.3") == deid.new_uid("1.2.3") != Deidentifier().new_uid("1.2.3")


def test_pixels_and_geometry_survive(tmp_path):
    deidentify_folder(GE_FILES[0], tmp_path / "out")
    before = pydicom.dcmread(GE_FILES[0])
    after = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert (before.pixel_array == after.pixel_array).all()
    assert after.ImagePositionPatient == before.ImagePositionPatient
    assert after.PixelSpacing == before.PixelSpacing


def test_burned_in_annotation_warning():
    ds = Dataset()
    ds.Modality = "US"
    assert "often have names or dates burned" in burned_in_warning(ds, "echo.dcm")
    ds.BurnedInAnnotation = "NO"
    assert burned_in_warning(ds) is None
    ds.BurnedInAnnotation = "YES"
    assert "BurnedInAnnotation is YES" in burned_in_warning(ds)
    mr = Dataset()
    mr.Modality = "MR"
    assert burned_in_warning(mr) is None


def test_cli_deidentify_folder(tmp_path, capsys):
    source = _study_with_identifiers(tmp_path)
    (source / "readme.txt").write_text("not dicom")
    assert main(["dicom", "deidentify", str(source), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "Wrote 17 de-identified DICOM files" in out and "readme.txt" in out
    assert main(["dicom", "deidentify", str(source), str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["dicom", "deidentify", str(tmp_path / "empty"), str(tmp_path / "out2")]) == 2
    assert "No readable DICOM" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# CT, MR, enhanced multi-frame CT, RGB multi-frame SC, an image with overlays, RT dose and structure set,
# an ECG waveform: the kinds of file a user may bring.
VALIDATED_KINDS = ["CT_small.dcm", "MR_small.dcm", "liver_1frame.dcm", "SC_rgb_rle_2frame.dcm",
                   "examples_overlay.dcm", "rtdose.dcm", "rtstruct.dcm", "waveform_ecg.dcm"]


@pytest.mark.parametrize("name", ["ge_mr", "tcia_ct", *VALIDATED_KINDS])
def test_deidentified_files_pass_dciodvfy_as_well_as_their_source(tmp_path, shared_data, name):
    """De-identification must not break a file: dciodvfy finds no error that the input did not have
    (the real inputs have their own, e.g. a GE Laterality quirk, which MedSyn leaves as it is)."""
    source = {"ge_mr": GE_FILES[0],
              "tcia_ct": sorted((shared_data / "dicom" / "tcia_covid19_ny_sbu_ct_slices").glob("*.dcm"))[0],
              }.get(name, PYDICOM_FILES / name)
    out = tmp_path / "out"
    deidentify_folder(source, out, allow_burned_in=True)  # the SC file is refused otherwise (burned-in text)
    written = next(out.rglob("*.dcm"))
    new_errors = set(dciodvfy_errors(written)) - set(dciodvfy_errors(source))
    assert new_errors == set(), f"de-identifying {source.name} introduced {new_errors}"
    assert pydicom.dcmread(written).PatientIdentityRemoved == "YES"


def _test_corpus(tmp_path: Path) -> list[Path]:
    """Every file of pydicom's and nibabel's test data (nibabel's gzipped DICOMs unpacked)."""
    files = sorted(p for p in PYDICOM_FILES.rglob("*") if p.is_file())
    nibabel_data = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
    for path in sorted(nibabel_data.iterdir()):
        if path.name.endswith(".dcm.gz"):
            unpacked = tmp_path / "nibabel" / path.name[:-3]
            unpacked.parent.mkdir(exist_ok=True)
            unpacked.write_bytes(gzip.decompress(path.read_bytes()))
            files.append(unpacked)
        elif path.is_file():
            files.append(path)
    return files


def test_every_pydicom_and_nibabel_test_file_deidentifies_validly_or_says_why(tmp_path):
    """All ~200 test files (a few seconds): each one is written with no new dciodvfy error, or skipped
    with a readable reason (not DICOM, truncated, a fragment without SOP instance UID, a DICOMDIR)."""
    written = refused = 0
    for index, source in enumerate(_test_corpus(tmp_path)):
        out = tmp_path / f"out{index}"
        try:
            report = deidentify_folder(source, out, allow_burned_in=True)
        except ValueError as exc:
            message = str(exc)
            assert source.name in message and "Traceback" not in message, message
            assert any(why in message for why in ("not a DICOM file", "truncated", "no SOPClassUID",
                                                  "DICOMDIR", "could not be parsed")), message
            refused += 1
            continue
        written += 1
        result = pydicom.dcmread(report.written[0])
        assert result.PatientIdentityRemoved == "YES"
        assert not any(elem.tag.is_private for elem in result.iterall()), source.name
        before = dciodvfy_errors(source)
        if any("read failed" in line for line in before):
            continue  # dciodvfy cannot read the (truncated) input: nothing to compare with
        new_errors = set(dciodvfy_errors(report.written[0])) - set(before)
        assert new_errors == set(), f"de-identifying {source.name} introduced {new_errors}"
    assert written >= 150 and refused <= 40, (written, refused)


def test_burned_in_test_files_are_refused_by_default_with_a_reason(tmp_path):
    report = deidentify_folder(PYDICOM_FILES, tmp_path / "out")
    refusals = [(Path(path).name, message) for path, message in report.problems if "not exported" in message]
    names = {name for name, _ in refusals}
    assert {"SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm", "JPEG2000.dcm", "image_dfl.dcm"} <= names
    assert report.refused == len(refusals)
    for _, message in refusals:
        assert "--blackout" in message and "--allow-burned-in" in message
