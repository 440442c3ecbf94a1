"""De-identification of DICOM: the PS3.15 Basic Application Level Confidentiality Profile.

Every DICOM dataset MedSyn reads goes through :meth:`Deidentifier.dataset` before any of its header is
stored or shown. What it does (PS3.15 Annex E, Table E.1-1, Basic Profile, no options retained):

* patient and study identifiers are emptied (``Z``: type 2 attributes that must stay present);
  institution, device, request and free-text attributes are removed (``X``);
* every other person name, date and time gets a dummy value (``D``: ``ANONYMIZED``, ``19000101``,
  ``000000``), so attributes that an IOD requires (type 1) stay valid while saying nothing;
* private tags, overlays and curves (groups 50xx/60xx) and group lengths are removed, also inside
  sequences;
* every non-standard UID (study, series, instance, frame of reference, referenced instances …) is replaced
  by a new one derived from the old one and a random per-run key, so the same study keeps consistent
  links inside one run while the new UIDs cannot be traced back;
* ``PatientIdentityRemoved = YES``, ``DeidentificationMethod`` and its code sequence (DCM 113100) are set.

Pixel data is copied unchanged: text burned into the pixels is NOT removed. :func:`burned_in_warning`
says when that is a risk (``BurnedInAnnotation`` YES, or absent for modalities that often carry text).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, generate_uid

from medsyn_core.files import atomic_directory

#: DeidentificationMethod (LO, at most 64 characters); the code sequence names the profile (DCM 113100).
METHOD = "MedSyn PS3.15 Basic Profile; private tags removed, UIDs replaced"

#: Attributes emptied (kept with zero length, action Z): type-2 attributes of common IODs.
EMPTY = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "ReferringPhysicianName", "StudyID",
)
# Reference sequences (Referenced Study/Performed Procedure Step …) are kept with their UIDs replaced:
# some IODs require them (type 2), others forbid them empty (type 3), and new UIDs identify nobody.

#: Attributes removed (Basic Profile actions X, X/Z, X/D where no common IOD requires them).
REMOVE = (
    # patient
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientBirthTime", "PatientAge", "PatientSize", "PatientWeight",
    "PatientAddress", "PatientTelephoneNumbers", "PatientComments", "AdditionalPatientHistory",
    "MilitaryRank", "BranchOfService", "EthnicGroup", "Occupation", "MedicalRecordLocator",
    "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "PatientInsurancePlanCodeSequence",
    "CountryOfResidence", "RegionOfResidence", "PatientReligiousPreference", "SmokingStatus",
    "PregnancyStatus", "LastMenstrualDate", "Allergies", "SpecialNeeds", "PatientState",
    "CurrentPatientLocation", "PatientInstitutionResidence", "ReferencedPatientSequence",
    "ReferencedPatientPhotoSequence", "ResponsiblePersonRole", "ResponsibleOrganization",
    "MedicalAlerts", "PatientTransportArrangements", "AdmissionID", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "ServiceEpisodeID", "ServiceEpisodeDescription",
    "IssuerOfAdmissionIDSequence",
    # institution, devices, people's contact details
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "StationName", "DeviceUID", "DetectorID", "PlateID", "GantryID", "CassetteID",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence",
    "OperatorIdentificationSequence", "RequestingService", "ScheduledStationName",
    "ScheduledStationAETitle", "PerformedStationName", "PerformedStationAETitle", "PerformedLocation",
    "OrderEntererLocation", "OrderCallbackPhoneNumber", "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle", "StorageMediaFileSetID",
    "PersonAddress", "PersonTelephoneNumbers",
    # study, request, procedure, free text
    "StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments", "StudyComments",
    "AcquisitionComments", "DerivationDescription", "FrameComments", "TextComments", "TextString",
    "RequestAttributesSequence", "RequestedProcedureID", "RequestedProcedureDescription",
    "RequestedProcedureComments", "ReasonForTheRequestedProcedure", "ReasonForStudy",
    "ScheduledProcedureStepID", "ScheduledProcedureStepDescription", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "CommentsOnThePerformedProcedureStep",
    "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
    "ImagingServiceRequestComments", "InterpretationText", "InterpretationDiagnosisDescription",
    "AcquisitionDeviceProcessingDescription", "ModifiedAttributesSequence", "OriginalAttributesSequence",
    "DigitalSignaturesSequence",
)

#: Attributes given a dummy value (action D) because some IODs require them (type 1).
DUMMY = ("DeviceSerialNumber",)
DUMMY_TEXT = "ANONYMIZED"
DUMMY_BY_VR = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "PN": DUMMY_TEXT}

#: Modalities where text (names, dates, annotations) is often burned into the pixels.
BURNED_IN_MODALITIES = frozenset({"US", "SC", "OT", "XA", "RF", "ES", "XC", "GM", "SM", "DX", "CR",
                                  "PX", "IO", "DOC"})
STANDARD_UID_ROOT = "1.2.840.10008."  # DICOM-defined UIDs (SOP classes, transfer syntaxes): kept

_EMPTY_TAGS = frozenset(tag_for_keyword(k) for k in EMPTY)
_REMOVE_TAGS = frozenset(tag_for_keyword(k) for k in REMOVE)
_DUMMY_TAGS = frozenset(tag_for_keyword(k) for k in DUMMY)


def _is_curve_or_overlay(tag) -> bool:
    return tag.group & 0xFF00 in (0x5000, 0x6000)


@dataclass
class Deidentifier:
    """Applies the Basic Profile; one instance per study/run keeps UID replacement consistent.

    ``key`` (random by default) seeds the UID replacement: the same old UID always maps to the same new
    UID within one Deidentifier, and without the key the mapping cannot be recomputed.
    """

    key: str = field(default_factory=lambda: os.urandom(16).hex())
    uid_map: dict[str, str] = field(default_factory=dict)

    def new_uid(self, old: str) -> str:
        """The replacement UID for ``old`` (stable within this Deidentifier)."""
        old = str(old)
        if old not in self.uid_map:
            self.uid_map[old] = generate_uid(entropy_srcs=[self.key, old])
        return self.uid_map[old]

    def dataset(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place (and its file meta) and return it."""
        self._clean(ds)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = DicomSequence([code])
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            new_meta = FileMetaDataset()
            for keyword in ("MediaStorageSOPClassUID", "TransferSyntaxUID"):
                if keyword in meta:
                    setattr(new_meta, keyword, getattr(meta, keyword))
            if "SOPInstanceUID" in ds:
                new_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            new_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            ds.file_meta = new_meta
        return ds

    def _clean(self, ds: Dataset) -> None:
        for elem in list(ds):
            tag = elem.tag
            if tag.is_private or tag.element == 0 or _is_curve_or_overlay(tag) or tag in _REMOVE_TAGS:
                del ds[tag]
            elif tag in _EMPTY_TAGS:
                elem.value = None if elem.VR != "SQ" else DicomSequence([])
            elif elem.VR == "SQ":
                for item in elem.value:
                    self._clean(item)
            elif tag in _DUMMY_TAGS and elem.value not in (None, ""):
                elem.value = DUMMY_BY_VR.get(elem.VR, DUMMY_TEXT)
            elif elem.VR in ("PN", "DA", "DT", "TM") and elem.value not in (None, ""):
                # every other person name, date and time: a dummy value (D); type-1 attributes stay valid
                elem.value = DUMMY_BY_VR[elem.VR] if elem.VM <= 1 else [DUMMY_BY_VR[elem.VR]] * elem.VM
            elif elem.VR == "UI" and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                new = [v if str(v).startswith(STANDARD_UID_ROOT) else self.new_uid(v) for v in values]
                elem.value = new if elem.VM > 1 else new[0]


def burned_in_warning(ds: Dataset, name: str = "") -> str | None:
    """A warning when the pixels may carry burned-in identifying text, else None."""
    flag = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    modality = str(ds.get("Modality", "")).strip().upper()
    where = f"{name}: " if name else ""
    if flag == "YES":
        return (f"{where}BurnedInAnnotation is YES: the pixels contain text that may identify the patient "
                "and de-identification does not remove it. Do not share these images; crop or mask them.")
    if not flag and modality in BURNED_IN_MODALITIES:
        return (f"{where}{modality} images often have names or dates burned into the pixels and this "
                "file does not say (no BurnedInAnnotation): check the images before sharing them.")
    return None


# -- files and folders ------------------------------------------------------------------------------
@dataclass
class DeidentificationReport:
    """What :func:`deidentify_folder` did; problems name the input file and the reason."""

    written: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (input file, message)
    warnings: list[str] = field(default_factory=list)


def _dicom_files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            yield path


def deidentify_bytes(ds: Dataset, deidentifier: Deidentifier) -> bytes:
    """De-identify ``ds`` and return the bytes of the written DICOM file."""
    deidentifier.dataset(ds)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def deidentify_folder(source: str | Path, out: str | Path, overwrite: bool = False,
                      deidentifier: Deidentifier | None = None) -> DeidentificationReport:
    """De-identify every DICOM file under ``source`` (a file or a folder) into the new folder ``out``.

    Output files are named ``series-NNN/image-NNNNN.dcm`` (input file names may themselves contain
    identifiers). Files that are not DICOM are skipped and listed in the report's problems; the
    output folder appears complete or not at all.
    """
    from medsyn_imaging.dicom_read import DicomReadError, read_dataset

    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist; give a DICOM file or a folder of DICOM files.")
    deid = deidentifier or Deidentifier()
    report = DeidentificationReport()
    series_index: dict[str, int] = {}
    counts: dict[int, int] = {}
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for path in _dicom_files(source):
            if path.name == "DICOMDIR" or path.name.startswith("DICOMDIR-"):
                report.problems.append((str(path), "DICOMDIR index skipped (it lists file paths only)."))
                continue
            try:
                ds = read_dataset(path)
            except DicomReadError as exc:
                report.problems.append((str(path), str(exc)))
                continue
            old_series = str(ds.get("SeriesInstanceUID", ""))
            warning = burned_in_warning(ds, path.name)
            try:
                data = deidentify_bytes(ds, deid)
            except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
                report.problems.append((str(path), f"{path.name} could not be rewritten after "
                                        f"de-identification ({exc}); it was skipped. If it is an image, "
                                        "export it again from the source as standard DICOM."))
                continue
            if warning:
                report.warnings.append(warning)
            series = series_index.setdefault(old_series, len(series_index) + 1)
            counts[series] = counts.get(series, 0) + 1
            target = tmp / f"series-{series:03d}" / f"image-{counts[series]:05d}.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            report.written.append(out / target.relative_to(tmp))
        if not report.written:
            raise ValueError(f"No readable DICOM file in {source}; nothing was written. "
                             f"Problems: {'; '.join(m for _, m in report.problems[:3]) or 'none found'}")
    return report


def read_deidentified(path: str | Path, deidentifier: Deidentifier | None = None) -> Dataset:
    """Read one DICOM file and return its de-identified dataset (pixel data included)."""
    from medsyn_imaging.dicom_read import read_dataset

    return (deidentifier or Deidentifier()).dataset(read_dataset(Path(path)))


__all__ = ["Deidentifier", "DeidentificationReport", "burned_in_warning", "deidentify_folder",
           "deidentify_bytes", "read_deidentified"]
