"""A crafted DICOM file with identifiers planted in every place an auditor would look.

:func:`write_crafted` writes it and returns the planted strings; the tests check that none of them
survives de-identification in any encoding (:func:`encodings_of`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

# Latin-1 and UTF-8 carry the accented names; only UTF-8 (ISO_IR 192) carries the ideographic ones.
LATIN_NAME = "Müller^Jürgen^Karl-Heinz^Dr.^III"
LATIN_PARTS = ("Müller", "Jürgen", "Karl-Heinz")
JAPANESE_NAME = "Yamadaleak^Tarouleak=山田^太郎=やまだ^たろう"
JAPANESE_PARTS = ("Yamadaleak", "Tarouleak", "山田", "太郎", "やまだ", "たろう")


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines, with UID values blanked (de-identification replaces them, so an input
    error about a UID reappears with the new UID)."""
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy is not installed: install the Debian package dicom3tools (.ci/run does)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return sorted({re.sub(r"(UID\s*)[\d.]+", r"\1<UID>", re.sub(r"\d+(\.\d+){3,}", "<UID>", line))
                   for line in lines if line.startswith("Error")})


def encodings_of(value: str) -> set[bytes]:
    """``value`` as it could appear in a file: ascii/latin-1/utf-8, and utf-16 for pixel-like payloads."""
    out = set()
    for codec in ("ascii", "latin-1", "utf-8", "utf-16-le", "utf-16-be"):
        try:
            out.add(value.encode(codec))
        except UnicodeEncodeError:
            continue
    return out


def _item(**attributes) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _code(value: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator="DCM", CodeMeaning=meaning)


def write_crafted(path: Path, charset: str = "ISO_IR 192") -> list[str]:
    """Write a small CT image with identifiers planted in more than 40 places; return the planted strings.

    ``charset`` is ``ISO_IR 192`` (UTF-8: accented and Japanese names) or ``ISO_IR 100`` (Latin-1:
    accented names only).
    """
    planted: list[str] = []

    def plant(value: str) -> str:
        planted.append(value)
        return value

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = plant("1.2.826.0.1.3680043.2.1143.777.1")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.2.1143.777.9"
    meta.ImplementationVersionName = plant("IMPLVLEAK0213")
    meta.SourceApplicationEntityTitle = plant("SRCAELEAK0311")
    meta.SendingApplicationEntityTitle = plant("SNDAELEAK0412")
    meta.PrivateInformationCreatorUID = plant("1.2.826.0.1.3680043.2.1143.777.2")
    meta.PrivateInformation = plant("META-PRIVATE-INFO-LEAK").encode() + b"\0\0"
    preamble = plant("PREAMBLE-LEAK-Doe-Jane").encode()
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=preamble.ljust(128, b"\0"))

    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = plant("1.2.826.0.1.3680043.2.1143.777.3")
    ds.SeriesInstanceUID = plant("1.2.826.0.1.3680043.2.1143.777.4")
    ds.FrameOfReferenceUID = plant("1.2.826.0.1.3680043.2.1143.777.5")
    ds.Modality = "CT"
    ds.BurnedInAnnotation = "NO"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Manufacturer = "ACME Medical"

    # patient: names in several components and character sets, identifiers, dates, contact details
    ds.PatientName = LATIN_NAME
    planted.extend(LATIN_PARTS)
    if charset == "ISO_IR 192":
        ds.OtherPatientNames = JAPANESE_NAME
        planted.extend(JAPANESE_PARTS)
    ds.PatientID = plant("MRN-31415-LEAK")
    ds.OtherPatientIDs = plant("OLDMRN-2718-LEAK")
    ds.OtherPatientIDsSequence = Sequence([_item(PatientID=plant("OTHERSEQ-ID-LEAK"),
                                                 IssuerOfPatientID=plant("ISSUER-SEQ-LEAK"))])
    ds.IssuerOfPatientID = plant("ISSUER-TOP-LEAK")
    ds.PatientBirthDate = plant("19370411")
    ds.PatientBirthTime = plant("071523.5")
    ds.PatientBirthDateInAlternativeCalendar = plant("BIRTHCAL1356LEAK")
    ds.PatientSex = "F"
    ds.PatientAge = "087Y"
    ds.PatientBirthName = plant("Birthname^Leakerin")
    ds.PatientMotherBirthName = plant("Mothername^Leakerin")
    ds.PatientAddress = plant("12 Leak Street, Springfield")
    ds.PatientTelephoneNumbers = plant("+1-555-0142-LEAK")
    ds.PatientTelecomInformation = plant("mailto:jane.leak@example.org")
    ds.PatientComments = plant("PATIENT-COMMENT-LEAK")
    ds.AdditionalPatientHistory = plant("HISTORY-LEAK-diabetic")
    ds.MedicalRecordLocator = plant("RECORDLOC-LEAK")
    ds.EthnicGroup = plant("ETHNIC-LEAK")
    ds.Occupation = plant("OCCUPATION-LEAK")

    # visit, admission, trial (the incident's attributes)
    ds.AdmissionID = plant("ADMISSION-LEAK-99")
    ds.IssuerOfAdmissionID = plant("ADMISSUER-LEAK")
    ds.ReasonForVisit = plant("REASON-VISIT-TOP-LEAK")
    ds.VisitComments = plant("VISIT-COMMENT-LEAK")
    ds.IdentifyingComments = plant("IDENT-COMMENT-LEAK")
    ds.DischargeDiagnosisDescription = plant("DISCHARGE-DIAG-LEAK")
    ds.ScheduledProcedureStepLocation = plant("SPSLOCATION-LEAK")
    ds.TimezoneOffsetFromUTC = plant("+1337")
    ds.ClinicalTrialSubjectID = plant("TRIAL-SUBJECT-LEAK")
    ds.ClinicalTrialSubjectReadingID = plant("TRIAL-READING-LEAK")

    # study, series, people, places, devices
    ds.StudyDate = plant("20190807")
    ds.StudyTime = plant("134259.123456")
    ds.SeriesDate = "20190807"
    ds.ContentDate = "20190807"
    ds.AcquisitionDateTime = plant("20190807134301.5")
    ds.AccessionNumber = plant("ACC-LEAK-5501")
    ds.StudyID = plant("STUDYLEAK1")
    ds.StudyDescription = plant("STUDY-DESC-LEAK")
    ds.SeriesDescription = plant("SERIES-DESC-LEAK")
    ds.ProtocolName = plant("PROTOCOL-LEAK-Jane")
    ds.ReferringPhysicianName = plant("Referrer^Leakington")
    ds.PerformingPhysicianName = plant("Performer^Leakwood")
    ds.OperatorsName = plant("Operator^Leakworth")
    ds.NameOfPhysiciansReadingStudy = plant("Reader^Leakfield")
    ds.RequestingPhysician = plant("Requester^Leakham")
    ds.InstitutionName = plant("Saint Leak General")
    ds.InstitutionAddress = plant("1 Hospital Leak Road")
    ds.InstitutionalDepartmentName = plant("LEAK-RADIOLOGY-DEPT")
    ds.StationName = plant("LEAKSTATION7")
    ds.DeviceSerialNumber = plant("SN-LEAK-4711")
    ds.ImageComments = plant("IMAGE-COMMENT-LEAK")
    ds.DerivationDescription = plant("DERIVATION-LEAK")

    # nested sequences, several levels; the incident's attributes also inside items
    telecom_nested = plant("tel:+1-555-0199-NESTED")
    reason_nested = plant("REASON-VISIT-NESTED-LEAK")
    ds.ReferencedImageSequence = Sequence([_item(
        ReferencedSOPClassUID=CTImageStorage,
        ReferencedSOPInstanceUID=plant("1.2.826.0.1.3680043.2.1143.777.6"),
        PatientTelecomInformation=telecom_nested,
        PurposeOfReferenceCodeSequence=Sequence([_item(
            CodeValue="121311", CodingSchemeDesignator="DCM", CodeMeaning="Localizer",
            ReasonForVisit=reason_nested,
            ReferencedImageSequence=Sequence([_item(
                ReferencedSOPClassUID=CTImageStorage,
                ReferencedSOPInstanceUID=plant("1.2.826.0.1.3680043.2.1143.777.7"),
                PatientName=plant("Deepest^Nestedleak"))]))]))])
    ds.RequestAttributesSequence = Sequence([_item(
        RequestedProcedureID=plant("REQPROC-LEAK"), ScheduledProcedureStepID=plant("SPSID-LEAK"),
        ReasonForTheRequestedProcedure=plant("REQ-REASON-LEAK"))])

    # SR-style content with free text (TextValue), also nested
    ds.ContentSequence = Sequence([_item(
        RelationshipType="CONTAINS", ValueType="TEXT", ConceptNameCodeSequence=Sequence([_code("121071",
                                                                                               "Finding")]),
        TextValue=plant("SR-TEXTVALUE-LEAK Jane had"),
        ContentSequence=Sequence([_item(RelationshipType="HAS OBS CONTEXT", ValueType="PNAME",
                                        PersonName=plant("Observer^Leakerson")),
                                  _item(RelationshipType="CONTAINS", ValueType="TEXT",
                                        TextValue=plant("SR-NESTED-TEXT-LEAK"))]))])

    # private tags and a private sequence
    block = ds.private_block(0x0029, plant("LEAKCORP PRIVATE 1.0"), create=True)
    block.add_new(0x10, "LO", plant("PRIVATE-LO-LEAK"))
    block.add_new(0x11, "SQ", Sequence([_item(PatientName=plant("Privseq^Hiddenleak"))]))

    # image: pixels, an icon image with text in its pixels, overlay and curve data
    rows = cols = 16
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.KVP = 120
    ds.PixelData = (np.arange(rows * cols, dtype=np.uint16) % 4096).tobytes()

    icon_text = plant("ICON-PIXEL-LEAK")
    icon_pixels = (icon_text.encode() + icon_text.encode("utf-16-le")).ljust(64, b"\0")
    ds.IconImageSequence = Sequence([_item(
        Rows=8, Columns=8, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", BitsAllocated=8,
        BitsStored=8, HighBit=7, PixelRepresentation=0)])
    ds.IconImageSequence[0].add_new(0x7FE00010, "OB", icon_pixels)

    overlay_text = plant("OVERLAY-DATA-LEAK")
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", cols)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60000022, "LO", plant("OVERLAY-DESC-LEAK"))
    ds.add_new(0x60001500, "LO", plant("OVERLAY-LABEL-LEAK"))
    ds.add_new(0x60003000, "OW", (overlay_text.encode() + overlay_text.encode("utf-16-be")).ljust(64, b"\0"))

    curve_text = plant("CURVE-DATA-LEAK")
    ds.add_new(0x50002500, "LO", plant("CURVE-LABEL-LEAK"))
    ds.add_new(0x50003000, "OW", (curve_text.encode("utf-16-le") + curve_text.encode()).ljust(64, b"\0"))

    ds.add_new(0xFFFCFFFC, "OB", plant("TRAILING-PADDING-LEAK").encode() + b"\0")
    ds.save_as(path, enforce_file_format=True)
    return planted
