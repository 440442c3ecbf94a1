"""Allowlist de-identification (PS3.15 Table E.1-1): planted identifiers, options, burned-in pixels."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from deid_crafted import dciodvfy_errors, encodings_of, write_crafted
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from medsyn_cli.main import main
from medsyn_imaging.io import deid_rules
from medsyn_imaging.io.deidentify import BlackoutRecipe, Deidentifier, DeidOptions, deidentify_folder
from medsyn_imaging.io.dicom_read import read_dicom_file
from medsyn_imaging.io.sources import deidentify_to_zip


@pytest.mark.parametrize("charset", ["ISO_IR 192", "ISO_IR 100"])
def test_no_planted_identifier_survives_the_cli_bytewise(tmp_path, capsys, charset):
    source = tmp_path / "in" / "crafted.dcm"
    source.parent.mkdir()
    planted = write_crafted(source, charset)
    assert len(planted) >= 40
    raw = source.read_bytes()
    assert all(any(e in raw for e in encodings_of(value)) for value in planted), "planting failed"
    assert main(["dicom", "deidentify", str(source.parent), str(tmp_path / "out")]) == 0
    written = list((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == 1, capsys.readouterr()
    data = written[0].read_bytes()
    survivors = sorted(value for value in planted if any(e in data for e in encodings_of(value)))
    assert survivors == [], f"{len(survivors)} of {len(planted)} planted identifiers survived: {survivors}"
    assert data[:128] == b"\0" * 128 and data[128:132] == b"DICM"
    ds = pydicom.dcmread(written[0])
    assert ds.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert ds.pixel_array.shape == (16, 16)
    assert (ds.pixel_array == pydicom.dcmread(source).pixel_array).all()


def test_option_switches_keep_exactly_what_each_option_allows(tmp_path, capsys):
    """With every option on, the retained values are there (dates shifted by the given offset) and every
    other planted identifier is still gone."""
    source = tmp_path / "in" / "crafted.dcm"
    source.parent.mkdir()
    planted = write_crafted(source)
    ds = pydicom.dcmread(source)
    ds.SeriesDescription = "AX T1 POST GD"  # plain descriptors: kept by Clean Descriptors
    ds.StudyDescription = "CT CHEST W/O CONTRAST"
    ds.ProtocolName = "Karl-Heinz chest"  # a word of the patient's name: removed
    ds.ImageComments = "seen on 2019-0807"  # a run of 4 digits: removed
    ds.save_as(source)
    assert main(["dicom", "deidentify", str(source.parent), str(tmp_path / "out"), "--retain-dates",
                 "--date-shift-days", "-10", "--retain-patient-characteristics", "--retain-device-identity",
                 "--clean-descriptors"]) == 0
    written = next((tmp_path / "out").rglob("*.dcm"))
    ds = pydicom.dcmread(written)
    assert ds.StudyDate == "20190728" and ds.ContentDate == "20190728"  # 2019-08-07 minus 10 days
    assert ds.AcquisitionDateTime == "20190728134301.5"
    assert ds.StudyTime == "134259.123456"  # times are kept: whole-day shifts do not change them
    assert "PatientBirthDate" not in ds or not ds.PatientBirthDate  # not a longitudinal date
    assert "TimezoneOffsetFromUTC" not in ds
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert ds.PatientSex == "F" and ds.PatientAge == "087Y"
    assert ds.DeviceSerialNumber == "SN-LEAK-4711" and ds.StationName == "LEAKSTATION7"
    # descriptors: kept only where they pass the check (no 4+ digit run, no word of a name or ID)
    assert ds.SeriesDescription == "AX T1 POST GD" and ds.StudyDescription == "CT CHEST W/O CONTRAST"
    assert "ProtocolName" not in ds and "ImageComments" not in ds
    assert "DerivationDescription" not in ds  # 'LEAK' is also a word of the planted IDs
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107", "113108", "113109", "113105"]
    # the table keeps Ethnic Group with patient characteristics and the Scheduled Procedure Step Location
    # with device identity
    retained = {"134259.123456", "SN-LEAK-4711", "LEAKSTATION7", "ETHNIC-LEAK", "SPSLOCATION-LEAK"}
    data = written.read_bytes()
    survivors = {v for v in planted if any(e in data for e in encodings_of(v))}
    assert survivors <= retained, survivors - retained


def test_secret_date_shift_is_one_per_run_and_differs_between_runs():
    first = Deidentifier(options=DeidOptions(retain_longitudinal_modified_dates=True))
    assert -3650 <= first.date_shift_days <= -1 and first.date_shift_days == first.date_shift_days
    assert Deidentifier(key="k").date_shift_days == Deidentifier(key="k").date_shift_days
    assert {Deidentifier().date_shift_days for _ in range(20)} != {first.date_shift_days}
    ds = Dataset()
    ds.StudyDate, ds.SeriesDate = "20200301", "20200301"
    first.dataset(ds)
    assert ds.StudyDate == (dt.date(2020, 3, 1) + dt.timedelta(days=first.date_shift_days)).strftime("%Y%m%d")


def test_date_shift_switch_errors_are_readable(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    write_crafted(source / "crafted.dcm")
    for extra, problem in ((["--date-shift-days", "5"], "only applies with --retain-dates"),
                           (["--retain-dates", "--date-shift-days", "0"], "would keep the real dates")):
        assert main(["dicom", "deidentify", str(source), str(tmp_path / "out"), *extra]) == 2
        assert problem in capsys.readouterr().err and not (tmp_path / "out").exists()


INCIDENT = ("PatientBirthDateInAlternativeCalendar", "PatientTelecomInformation", "ReasonForVisit",
            "VisitComments", "IdentifyingComments", "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
            "DischargeDiagnosisDescription", "ScheduledProcedureStepLocation", "IssuerOfAdmissionID",
            "TimezoneOffsetFromUTC", "TextValue", "IconImageSequence", "DataSetTrailingPadding")


def test_table_covers_the_incident_attributes_and_the_allowlist_is_disjoint_from_it():
    """Every attribute of the audit has a rule that removes or replaces it; none is on the allowlist."""
    assert len(deid_rules.table()) == 617  # 621 rows, 4 of them repeating groups handled in code
    assert len(deid_rules.safe_tags()) > 600  # raises on a misspelt keyword or a table attribute
    for keyword in INCIDENT:
        tag = tag_for_keyword(keyword)
        rule = deid_rules.rule_for(tag)
        assert rule is not None and rule.basic in ("X", "D"), keyword
        assert tag not in deid_rules.safe_tags(), keyword


def _burned_in_us(path, text_rows: slice = slice(0, 4)):
    """A small ultrasound image flagged BurnedInAnnotation=YES whose top rows hold bright 'text'."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.BurnedInAnnotation = "US", "YES"
    ds.Manufacturer, ds.ManufacturerModelName = "ACME Medical", "EchoView 5"
    ds.PatientName = "Echo^Patient"
    pixels = np.full((16, 20), 40, dtype=np.uint8)
    pixels[text_rows, 2:18] = 255  # the burned-in name
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 16, 20, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pixels


def test_burned_in_file_is_refused_then_blacked_out_with_a_recipe(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = _burned_in_us(folder / "echo.dcm")
    assert main(["dicom", "deidentify", str(folder), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "echo.dcm was not exported: BurnedInAnnotation is YES" in err and "--blackout" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()

    recipe = tmp_path / "blackout.yaml"
    recipe.write_text("rules:\n  - manufacturer: acme medical\n    model: EchoView 5\n"
                      "    rectangles: [[0, 0, 20, 4]]\n")
    assert main(["dicom", "deidentify", str(folder), str(tmp_path / "out"), "--blackout", str(recipe)]) == 0
    assert "1 with burned-in text blacked out" in capsys.readouterr().out
    ds = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert (ds.pixel_array[:4] == 0).all() and (ds.pixel_array[4:] == pixels[4:]).all()
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113101"]
    assert ds.BurnedInAnnotation == "NO" and "PatientName" in ds and not ds.PatientName

    # a recipe for another device does not apply: still refused, and the message says so
    recipe.write_text('[{"manufacturer": "Other", "model": "X", "rectangles": [[0, 0, 5, 5]]}]')
    recipe = recipe.rename(tmp_path / "other.json")
    assert main(["dicom", "deidentify", str(folder), str(tmp_path / "out2"), "--blackout", str(recipe)]) == 2
    assert "was not exported" in capsys.readouterr().err
    # --allow-burned-in exports it unchanged, with a warning
    assert main(["dicom", "deidentify", str(folder), str(tmp_path / "out3"), "--allow-burned-in"]) == 0
    assert "pixels unchanged because burned-in text was allowed" in capsys.readouterr().out
    ds = pydicom.dcmread(next((tmp_path / "out3").rglob("*.dcm")))
    assert (ds.pixel_array == pixels).all() and ds.BurnedInAnnotation == "YES"


@pytest.mark.parametrize("text, problem", [
    ("rules: []", "expected a list of rules"),
    ("- manufacturer: A\n  model: B\n", "rectangles missing"),
    ("- {manufacturer: A, model: B, rectangles: [[5, 0, 2, 4]]}", "must be [x0, y0, x1, y1]"),
    ("- {manufacturer: A, model: B, rows: -3, rectangles: [[0, 0, 2, 4]]}", "rows must be a positive"),
    ("{: [", "not valid JSON/YAML"),
])
def test_bad_blackout_recipe_gives_a_readable_error(tmp_path, capsys, text, problem):
    folder = tmp_path / "in"
    folder.mkdir()
    _burned_in_us(folder / "echo.dcm")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert main(["dicom", "deidentify", str(folder), str(tmp_path / "out"), "--blackout", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_blackout_of_compressed_colour_multiframe_ultrasound(tmp_path):
    """A real JPEG YBR ultrasound cine (30 frames): every frame's rectangle is zero, the file is valid."""
    source = Path(get_testdata_file("examples_ybr_color.dcm"))
    rule = {"manufacturer": "SonoSite, Inc.", "model": "Turbo", "rows": 240, "columns": 320,
            "rectangles": [[0, 0, 320, 30], [300, 200, 320, 240]]}
    recipe = BlackoutRecipe.from_data([rule])
    report = deidentify_folder(source, tmp_path / "out", blackout=recipe)
    assert report.blacked_out == 1
    ds = pydicom.dcmread(report.written[0])
    arr = ds.pixel_array
    assert arr.shape == (30, 240, 320, 3) and ds.PhotometricInterpretation == "RGB"
    assert (arr[:, :30] == 0).all() and (arr[:, 200:, 300:] == 0).all() and arr[:, 30:200].any()
    before = pydicom.dcmread(source).pixel_array
    assert np.abs(arr[:, 30:200].astype(int) - before[:, 30:200]).max() == 0
    assert set(dciodvfy_errors(report.written[0])) - set(dciodvfy_errors(source)) == set()


def test_viewing_a_burned_in_file_still_works_with_a_warning():
    """Refusal is for export: MedSyn's own reader (Imaging page) shows the images and warns."""
    volume = read_dicom_file(get_testdata_file("examples_ybr_color.dcm"))
    assert volume.pixels.shape[0] == 30
    assert any("burned" in note for note in volume.warnings)
    assert volume.metadata["PatientIdentityRemoved"] == "YES"


def test_uploads_and_a_zip_are_deidentified_into_a_download(tmp_path):
    """What the Imaging page offers: uploaded files (one a zip) -> a zip of de-identified files, with
    problems naming the uploads (no temporary paths)."""
    crafted = tmp_path / "crafted.dcm"
    planted = write_crafted(crafted)
    echo = tmp_path / "echo.dcm"
    _burned_in_us(echo)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("study/crafted.dcm", crafted.read_bytes())
    uploads = [("study.zip", inner.getvalue()), ("echo.dcm", echo.read_bytes()), ("notes.txt", b"hello")]
    data, report = deidentify_to_zip(uploads, Deidentifier())
    assert [str(p) for p in report.written] == ["deidentified/series-001/image-00001.dcm"]
    assert report.refused == 1 and {name for name, _ in report.problems} == {"echo.dcm", "notes.txt"}
    assert all("/tmp" not in message for _, message in report.problems)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["deidentified/series-001/image-00001.dcm"]
        content = archive.read(archive.namelist()[0])
    assert not [v for v in planted if any(e in content for e in encodings_of(v))]
