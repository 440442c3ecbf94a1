"""De-identification of DICOM by allowlist: PS3.15 Annex E Basic Profile, Table E.1-1, with options.

Every DICOM dataset MedSyn reads goes through :meth:`Deidentifier.dataset` before any of its header is
stored or shown, and :func:`deidentify_folder` writes de-identified copies for sharing. Rules (details,
provenance and limits in docs/deidentification.md):

* an attribute of Table E.1-1 (:mod:`medsyn_imaging.io.deid_rules`) gets its Basic Profile action, or the
  action of an enabled option (:class:`DeidOptions`): ``X`` removed, ``Z`` emptied, ``D`` a dummy value,
  ``U`` a new UID (consistent within one :class:`Deidentifier`), ``K`` kept, ``C`` cleaned;
* an attribute not in the table is kept only if it is on the allowlist :data:`deid_rules.SAFE` (what an
  image needs to be displayed and interpreted); everything else is removed: private tags, overlays
  (60xx), curves (50xx), group lengths, Data Set Trailing Padding, icons, unknown attributes;
* sequences are processed recursively with the same rules; pixel data is kept at the top level only;
* the file meta is rebuilt from scratch and the 128-byte preamble is zeroed;
* ``PatientIdentityRemoved``, ``DeidentificationMethod``, ``DeidentificationMethodCodeSequence`` (113100
  and one code per option used) and ``LongitudinalTemporalInformationModified`` are set.

Burned-in text: files that carry text in their pixels (``BurnedInAnnotation`` YES, ultrasound, secondary
capture, screenshots …) are refused by :func:`deidentify_folder` unless a :class:`BlackoutRecipe` declares
the rectangles to black out for their manufacturer and model (then Clean Pixel Data, 113101, is
recorded) or the caller allows burned-in text. Viewing in MedSyn only warns (:func:`burned_in_warning`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.utils import get_expected_length
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, generate_uid

from medsyn_core.files import atomic_directory
from medsyn_imaging.io import deid_rules
from medsyn_imaging.io.dicom_files import DicomReadError, read_dataset

#: DeidentificationMethod (LO, at most 64 characters per value); one value per option used.
METHOD = "MedSyn allowlist, PS3.15 Basic Profile (Table E.1-1 2024b)"

#: (code value, code meaning, DeidentificationMethod text) of the profile and each option (DCM codes).
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile", METHOD)
OPTION_CODES = {
    "clean_pixel_data": ("113101", "Clean Pixel Data Option", "Clean Pixel Data (declared rectangles)"),
    "clean_descriptors": ("113105", "Clean Descriptors Option", "Clean Descriptors"),
    "retain_longitudinal_modified_dates": (
        "113107", "Retain Longitudinal Temporal Information Modified Dates Option",
        "Retain Longitudinal Temporal Information Modified Dates"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option",
                                       "Retain Patient Characteristics"),
    "retain_device_identity": ("113109", "Retain Device Identity Option", "Retain Device Identity"),
}

DUMMY_TEXT = "ANONYMIZED"
DUMMY_BY_VR = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000Y", "DS": "0",
               "IS": "0", "UR": "urn:anonymized"}
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV"})
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})

#: Combined actions of Table E.1-1 depend on the attribute's type in the IOD (X if type 3, Z if type 2,
#: D if type 1). Without IOD tables MedSyn removes (X) or empties (Z/D -> Z) by default, and gives the
#: attributes that common IODs require the action that keeps them valid:
COMBINED_DEFAULT = {"X/Z": "X", "X/D": "X", "X/Z/D": "X", "Z/D": "Z", "X/Z/U*": "U"}
COMBINED_REQUIRED = {
    "ContentDate": "D", "ContentTime": "D",  # type 1 in SC, enhanced, SR and segmentation IODs
    "AcquisitionDateTime": "D",  # type 1C in enhanced CT/MR
    "DeviceSerialNumber": "D",  # type 1 in Enhanced General Equipment
    "ObservationDateTime": "D",  # type 1C in SR content items
    "RTPlanDate": "D", "RTPlanTime": "D", "TreatmentDate": "D", "TreatmentTime": "D",  # type 2 in RT
    "AcquisitionContextSequence": "Z", "TreatmentMachineName": "Z", "ReviewerName": "Z",
    "PatientSexNeutered": "Z",
    "OperatorsName": "Z",  # type 2 in RT Series
    "ReferencedPerformedProcedureStepSequence": "D",  # type 2 in SR, type 3 (not empty) in General Series
}

#: Modalities whose images usually carry burned-in text (names, dates, measurements): refused for export
#: unless blacked out or allowed.
BURNED_IN_REFUSED_MODALITIES = frozenset({"US", "SC", "OT", "XC", "ES", "GM", "DOC", "IVUS", "OP", "SM"})
#: Modalities that sometimes carry it: a warning.
BURNED_IN_WARNED_MODALITIES = frozenset({"XA", "RF", "DX", "CR", "PX", "IO", "MG", "ECG"})
STANDARD_UID_ROOT = "1.2.840.10008."  # DICOM-defined UIDs (SOP classes, transfer syntaxes): kept
MAX_DATE_SHIFT_DAYS = 3650


@dataclass(frozen=True)
class DeidOptions:
    """The PS3.15 profile options MedSyn offers (all off = Basic Profile only).

    ``date_shift_days`` (with ``retain_longitudinal_modified_dates``): the shift applied to every date,
    in days (negative = earlier); None derives a secret shift of 1 to 3650 days into the past from the
    Deidentifier's key, the same for every file of one run.
    """

    retain_longitudinal_modified_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    clean_descriptors: bool = False
    date_shift_days: int | None = None

    def __post_init__(self) -> None:
        if self.date_shift_days is not None and int(self.date_shift_days) == 0:
            raise ValueError("A date shift of 0 days would keep the real dates; give a non-zero number of "
                             "days, or none for a secret random shift.")

    def enabled(self) -> list[str]:
        """Names of the options switched on, in Table E.1-1 column order."""
        return [name for name in deid_rules.OPTION_COLUMNS if getattr(self, name)]


def _is_curve_or_overlay(tag) -> bool:
    return tag.group & 0xFF00 in (0x5000, 0x6000)


def _value_list(elem) -> list:
    if elem.value is None or elem.value == "":
        return []
    return list(elem.value) if elem.VM > 1 else [elem.value]


def _set_values(elem, values: list) -> None:
    elem.value = values if len(values) > 1 else (values[0] if values else None)


@dataclass
class Deidentifier:
    """Applies the Basic Profile (and options); one instance per run keeps UIDs and dates consistent.

    ``key`` (random by default) seeds UID replacement and the secret date shift: the same old UID always
    maps to the same new UID within one Deidentifier, and without the key the mapping cannot be
    recomputed.
    """

    key: str = field(default_factory=lambda: os.urandom(16).hex())
    uid_map: dict[str, str] = field(default_factory=dict)
    options: DeidOptions = field(default_factory=DeidOptions)

    def new_uid(self, old: str) -> str:
        """The replacement UID for ``old`` (stable within this Deidentifier)."""
        old = str(old)
        if old not in self.uid_map:
            self.uid_map[old] = generate_uid(entropy_srcs=[self.key, old])
        return self.uid_map[old]

    @property
    def date_shift_days(self) -> int:
        """Days added to every date under the Modified Dates option (negative: into the past)."""
        if self.options.date_shift_days is not None:
            return int(self.options.date_shift_days)
        digest = hashlib.sha256(f"{self.key}:date-shift".encode()).digest()
        return -(1 + int.from_bytes(digest[:8], "big") % MAX_DATE_SHIFT_DAYS)

    # -- the whole dataset ------------------------------------------------------------------------------
    def dataset(self, ds: Dataset, clean_pixel_data: bool = False) -> Dataset:
        """De-identify ``ds`` in place (header, file meta, preamble) and return it.

        ``clean_pixel_data``: the caller blacked out the burned-in text (recorded as option 113101).
        """
        identifiers = _identifying_words(ds) if self.options.clean_descriptors else frozenset()
        self._clean(ds, depth=0, identifiers=identifiers)
        used = self.options.enabled() + (["clean_pixel_data"] if clean_pixel_data else [])
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = [BASIC_PROFILE[2]] + [OPTION_CODES[name][2] for name in used]
        codes = []
        for value, meaning in [BASIC_PROFILE[:2]] + [OPTION_CODES[name][:2] for name in used]:
            code = Dataset()
            code.CodeValue = value
            code.CodingSchemeDesignator = "DCM"
            code.CodeMeaning = meaning
            codes.append(code)
        ds.DeidentificationMethodCodeSequence = DicomSequence(codes)
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.options.retain_longitudinal_modified_dates else "REMOVED")
        if clean_pixel_data:
            ds.BurnedInAnnotation = "NO"
        if getattr(ds, "preamble", None) is not None:
            ds.preamble = b"\0" * 128
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            new_meta = FileMetaDataset()
            new_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", meta.get("MediaStorageSOPClassUID"))
            if "TransferSyntaxUID" in meta:
                new_meta.TransferSyntaxUID = meta.TransferSyntaxUID
            if "SOPInstanceUID" in ds:
                new_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            new_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            if new_meta.MediaStorageSOPClassUID is None:
                del new_meta.MediaStorageSOPClassUID
            ds.file_meta = new_meta
        return ds

    # -- one dataset level (recursive) ------------------------------------------------------------------
    def _clean(self, ds: Dataset, depth: int, identifiers: frozenset[str]) -> None:
        safe = deid_rules.safe_tags()
        for elem in list(ds):
            tag = elem.tag
            if (tag.is_private or tag.element == 0 or tag.group < 0x0008 or _is_curve_or_overlay(tag)
                    or tag == 0xFFFCFFFC):
                del ds[tag]
                continue
            keyword = elem.keyword
            if keyword in deid_rules.PIXEL_KEYWORDS:
                if depth > 0:
                    del ds[tag]
                continue
            rule = deid_rules.rule_for(tag)
            if rule is not None:
                self._apply(ds, elem, self._action(rule, keyword), rule, depth, identifiers)
            elif tag in safe and elem.VR != "UN":
                self._keep(elem, depth, identifiers)
            else:
                del ds[tag]

    def _action(self, rule: deid_rules.Rule, keyword: str) -> str:
        """The action for ``rule`` given the enabled options: ``K``, ``C:<option>`` or a basic action."""
        for name in self.options.enabled():
            if rule.options.get(name) == "K":
                return "K"
        for name in self.options.enabled():
            if rule.options.get(name) == "C":
                return f"C:{name}"
        return self._basic(rule, keyword)

    @staticmethod
    def _basic(rule: deid_rules.Rule, keyword: str) -> str:
        if "/" in rule.basic:
            return COMBINED_REQUIRED.get(keyword, COMBINED_DEFAULT[rule.basic])
        return rule.basic

    def _keep(self, elem, depth: int, identifiers: frozenset[str]) -> None:
        """Keep ``elem``: recurse into sequences, replace instance UIDs."""
        if elem.VR == "SQ":
            for item in elem.value:
                self._clean(item, depth + 1, identifiers)
        elif elem.VR == "UI" and elem.keyword not in deid_rules.DEFINITION_UIDS:
            self._replace_uids(elem)

    def _replace_uids(self, elem) -> None:
        _set_values(elem, [v if str(v).startswith(STANDARD_UID_ROOT) else self.new_uid(v)
                           for v in _value_list(elem)])

    def _apply(self, ds: Dataset, elem, action: str, rule: deid_rules.Rule, depth: int,
               identifiers: frozenset[str]) -> None:
        vr = elem.VR
        if action.startswith("C:"):
            option = action[2:]
            if vr == "SQ":
                self._keep(elem, depth, identifiers)
                return
            if option == "retain_longitudinal_modified_dates" and self._shift_dates(elem):
                return
            if option == "clean_descriptors" and vr in _TEXT_VRS and _descriptor_is_clean(elem, identifiers):
                return
            action = self._basic(rule, elem.keyword)  # cannot be kept safely: the Basic Profile action
        if action == "K":
            self._keep(elem, depth, identifiers)
        elif action == "X" or vr == "UN":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = DicomSequence([]) if vr == "SQ" else (b"" if vr in _BINARY_VRS else None)
        elif action == "U" or (action == "D" and vr == "UI"):
            if vr == "SQ":
                self._keep(elem, depth, identifiers)
            elif vr == "UI":
                self._replace_uids(elem)
            else:  # X/Z/U* on a non-UID attribute: Z
                elem.value = b"" if vr in _BINARY_VRS else None
        elif action == "D":
            self._dummy(elem, depth, identifiers)
        else:
            raise ValueError(f"unknown de-identification action {action!r} for {rule.name}")

    def _dummy(self, elem, depth: int, identifiers: frozenset[str]) -> None:
        """Action D: a dummy value of the same VR (a sequence keeps its items, cleaned recursively)."""
        vr = elem.VR
        if vr == "SQ":
            self._keep(elem, depth, identifiers)
            return
        count = max(1, len(_value_list(elem)))
        if vr in _NUMERIC_VRS:
            _set_values(elem, [0] * count)
        elif vr in _BINARY_VRS:
            elem.value = b"\0\0"
        elif vr == "AT":
            pass  # a tag pointer identifies nobody
        else:
            _set_values(elem, [DUMMY_BY_VR.get(vr, DUMMY_TEXT)] * count)

    def _shift_dates(self, elem) -> bool:
        """Modified Dates option: shift DA/DT by the run's offset, keep TM; False if not possible."""
        if elem.VR == "TM":
            return True
        if elem.VR not in ("DA", "DT"):
            return False  # e.g. Timezone Offset From UTC: not kept
        values = [str(v) for v in _value_list(elem)]
        shifted = [_shift_date_text(v, self.date_shift_days) for v in values]
        if any(s is None for s in shifted):
            return False
        _set_values(elem, shifted)
        return True


def _shift_date_text(text: str, days: int) -> str | None:
    """``YYYYMMDD…`` shifted by ``days``; a DT keeps its time and loses its UTC offset; None if unparsable."""
    text = text.strip()
    match = re.fullmatch(r"(\d{8})(\d{0,6}(?:\.\d{1,6})?)?([+-]\d{4})?", text)
    if not match:
        return None
    try:
        date = dt.datetime.strptime(match.group(1), "%Y%m%d").date() + dt.timedelta(days=days)
    except ValueError:
        return None
    return f"{date:%Y%m%d}{match.group(2) or ''}"


# -- Clean Descriptors -------------------------------------------------------------------------------------
_DESCRIPTOR_CHARS = re.compile(r"[A-Za-z0-9 ._,:;/()+\-#%*<>=\[\]&]*")
_WORD = re.compile(r"[a-z0-9]{3,}")


def _identifying_words(ds: Dataset) -> frozenset[str]:
    """Lower-case words (3+ letters/digits) of the identifying text attributes of ``ds`` (names, IDs,
    institutions, addresses …): a descriptor that contains one of them is not kept."""
    words: set[str] = set()
    for elem in ds.iterall():
        if elem.VR not in _TEXT_VRS or elem.tag.is_private:
            continue
        rule = deid_rules.rule_for(elem.tag)
        if rule is None or "clean_descriptors" in rule.options or elem.VR == "CS":
            continue
        for value in _value_list(elem):
            words.update(_WORD.findall(str(value).lower()))
    return frozenset(words)


def _descriptor_is_clean(elem, identifiers: frozenset[str]) -> bool:
    """Clean Descriptors: a descriptor is kept only if it is short plain text (ASCII letters, digits and
    punctuation), has no run of 4+ digits (dates, IDs, phone numbers) and no word of the dataset's
    identifying attributes; otherwise the Basic Profile action applies."""
    for value in _value_list(elem):
        text = str(value)
        if (len(text) > 64 or not _DESCRIPTOR_CHARS.fullmatch(text) or re.search(r"\d{4,}", text)
                or set(_WORD.findall(text.lower())) & identifiers):
            return False
    return True


# -- burned-in text -------------------------------------------------------------------------------------
def _has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in deid_rules.PIXEL_KEYWORDS)


def burned_in_reason(ds: Dataset) -> str | None:
    """Why ``ds``'s pixels probably carry burned-in text (then export is refused), or None."""
    if not _has_pixels(ds):
        return None
    flag = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    modality = str(ds.get("Modality", "")).strip().upper()
    sop_class = getattr(ds.get("SOPClassUID"), "name", "") or ""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if flag == "YES":
        return "BurnedInAnnotation is YES: its pixels contain text"
    if modality in BURNED_IN_REFUSED_MODALITIES:
        return f"{modality} images usually have names, dates or measurements burned into the pixels"
    if "Secondary Capture" in sop_class or "SCREEN SAVE" in image_type or \
            str(ds.get("ConversionType", "")).upper() in ("WSD", "SD", "DRW"):
        return "it is a secondary capture (screenshot or scanned document), which usually shows text"
    return None


def burned_in_warning(ds: Dataset, name: str = "") -> str | None:
    """A warning for viewing when the pixels may carry burned-in identifying text, else None."""
    where = f"{name}: " if name else ""
    reason = burned_in_reason(ds) if _has_pixels(ds) else None
    flag = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    modality = str(ds.get("Modality", "")).strip().upper()
    if flag == "YES":
        return (f"{where}BurnedInAnnotation is YES: the pixels contain text that may identify the patient "
                "and de-identification does not remove it. Do not share these images; crop or mask them.")
    if reason:
        return (f"{where}{reason[0].upper()}{reason[1:]}: check the images before sharing them (export "
                "refuses them unless the text areas are blacked out).")
    if not flag and modality in BURNED_IN_WARNED_MODALITIES | BURNED_IN_REFUSED_MODALITIES:
        return (f"{where}{modality} images often have names or dates burned into the pixels and this "
                "file does not say (no BurnedInAnnotation): check the images before sharing them.")
    return None


def refusal_message(name: str, reason: str) -> str:
    """The readable refusal of one file with burned-in text (what is wrong, what to do)."""
    return (f"{name} was not exported: {reason}, and de-identification cannot read text in pixels. "
            "Give a blackout recipe with the text rectangles for its manufacturer and model (CLI: "
            "--blackout FILE), or, if you checked that its images show no identifying text, allow "
            "burned-in text (CLI: --allow-burned-in). See docs/deidentification.md.")


@dataclass(frozen=True)
class BlackoutRule:
    """Rectangles ``(x0, y0, x1, y1)`` (columns x0..x1-1, rows y0..y1-1; 0,0 = top left) to black out in
    the images of one device; ``rows``/``columns`` restrict the rule to images of that size."""

    manufacturer: str
    model: str
    rectangles: tuple[tuple[int, int, int, int], ...]
    rows: int | None = None
    columns: int | None = None

    def matches(self, ds: Dataset) -> bool:
        def same(a, b) -> bool:
            return " ".join(str(a or "").split()).casefold() == " ".join(str(b or "").split()).casefold()

        return (same(ds.get("Manufacturer"), self.manufacturer)
                and same(ds.get("ManufacturerModelName"), self.model)
                and (self.rows is None or int(ds.get("Rows", 0) or 0) == self.rows)
                and (self.columns is None or int(ds.get("Columns", 0) or 0) == self.columns))


@dataclass(frozen=True)
class BlackoutRecipe:
    """Blackout rectangles per device (manufacturer + model), from a small JSON or YAML file::

        rules:
          - manufacturer: ACME Medical
            model: EchoView 5
            rows: 480            # optional: only images of this size
            columns: 640
            rectangles: [[0, 0, 640, 40]]   # x0, y0, x1, y1 in pixels
    """

    rules: tuple[BlackoutRule, ...]

    @classmethod
    def load(cls, path: str | Path) -> BlackoutRecipe:
        """Read a recipe; ValueError says what is wrong and where."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Blackout recipe {path.name} does not exist; give a JSON or YAML file.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"Blackout recipe {path.name} is not a UTF-8 text file.") from exc
        return cls.from_text(text, path.name)

    @classmethod
    def from_text(cls, text: str, name: str = "blackout recipe") -> BlackoutRecipe:
        """Parse JSON or YAML text (YAML is a superset of JSON)."""
        try:
            data = json.loads(text) if name.lower().endswith(".json") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            reason = str(exc).splitlines()[0]
            raise ValueError(f"Blackout recipe {name} is not valid JSON/YAML ({reason}).") from exc
        return cls.from_data(data, name)

    @classmethod
    def from_data(cls, data, name: str = "blackout recipe") -> BlackoutRecipe:
        rules = data.get("rules") if isinstance(data, dict) else data
        if not isinstance(rules, list) or not rules:
            raise ValueError(f"{name}: expected a list of rules (or {{'rules': [...]}}), each with "
                             "manufacturer, model and rectangles.")
        out = []
        for index, rule in enumerate(rules, start=1):
            where = f"{name}, rule {index}"
            if not isinstance(rule, dict):
                raise ValueError(f"{where}: a rule is a mapping with manufacturer, model and rectangles.")
            missing = [k for k in ("manufacturer", "model", "rectangles") if not rule.get(k)]
            if missing:
                raise ValueError(f"{where}: {', '.join(missing)} missing.")
            rectangles = []
            for rect in rule["rectangles"]:
                if (not isinstance(rect, list | tuple) or len(rect) != 4
                        or not all(isinstance(v, int) and v >= 0 for v in rect)
                        or rect[2] <= rect[0] or rect[3] <= rect[1]):
                    raise ValueError(f"{where}: rectangle {rect!r} must be [x0, y0, x1, y1], whole pixels "
                                     "with x1 > x0 >= 0 and y1 > y0 >= 0.")
                rectangles.append(tuple(rect))
            size = {}
            for key in ("rows", "columns"):
                if rule.get(key) is not None:
                    if not isinstance(rule[key], int) or rule[key] <= 0:
                        raise ValueError(f"{where}: {key} must be a positive whole number.")
                    size[key] = rule[key]
            out.append(BlackoutRule(str(rule["manufacturer"]), str(rule["model"]), tuple(rectangles), **size))
        return cls(tuple(out))

    def rectangles_for(self, ds: Dataset) -> tuple[tuple[int, int, int, int], ...] | None:
        """The rectangles of the first rule matching ``ds``'s device and size, or None."""
        return next((rule.rectangles for rule in self.rules if rule.matches(ds)), None)


def black_out(ds: Dataset, rectangles: Iterable[tuple[int, int, int, int]]) -> None:
    """Set the pixels of every frame inside ``rectangles`` to zero (the pixel data is rewritten
    uncompressed; YBR colour is converted to RGB)."""
    arr = np.array(ds.pixel_array)  # (rows, cols[, 3]) or (frames, rows, cols[, 3]); a writable copy
    rows, cols = int(ds.Rows), int(ds.Columns)
    for x0, y0, x1, y1 in rectangles:
        if x0 >= cols or y0 >= rows:
            raise ValueError(f"blackout rectangle {[x0, y0, x1, y1]} lies outside the {cols}x{rows} image; "
                             "fix the recipe.")
        if int(ds.get("SamplesPerPixel", 1)) > 1:
            arr[..., y0:y1, x0:x1, :] = 0
        else:
            arr[..., y0:y1, x0:x1] = 0
    photometric = str(ds.PhotometricInterpretation)
    if int(ds.get("SamplesPerPixel", 1)) > 1 and photometric.startswith("YBR"):
        photometric = "RGB"  # pixel_array converted it
    ds.set_pixel_data(arr, photometric, int(ds.BitsStored), generate_instance_uid=False)


# -- files and folders ------------------------------------------------------------------------------
@dataclass
class DeidentificationReport:
    """What :func:`deidentify_folder` did; problems name the input file and the reason."""

    written: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (input file, message)
    warnings: list[str] = field(default_factory=list)
    refused: int = 0  # files refused for burned-in text
    blacked_out: int = 0  # files whose declared rectangles were blacked out


def _dicom_files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            yield path


def _unwritable(ds: Dataset, name: str) -> str | None:
    """A message when ``ds`` cannot become a valid de-identified file (what is wrong, what to do)."""
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        return (f"{name} has no SOPClassUID or SOPInstanceUID, which every DICOM object needs (it is a "
                "fragment, not a stored instance); it was skipped. Export it again from the source.")
    if "PixelData" not in ds or ds.file_meta.TransferSyntaxUID.is_compressed:
        return None
    try:
        expected = int(get_expected_length(ds, "bytes"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if len(ds.PixelData) < expected:
        return (f"{name} has {len(ds.PixelData)} bytes of pixel data where its header needs {expected}: "
                "the file is truncated and was skipped. Copy it again from the source.")
    return None


def deidentify_bytes(ds: Dataset, deidentifier: Deidentifier, clean_pixel_data: bool = False) -> bytes:
    """De-identify ``ds`` and return the bytes of the written DICOM file (zero preamble, new meta)."""
    deidentifier.dataset(ds, clean_pixel_data=clean_pixel_data)
    buf = io.BytesIO()
    ds.preamble = b"\0" * 128
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def deidentify_folder(source: str | Path, out: str | Path, overwrite: bool = False,
                      deidentifier: Deidentifier | None = None, *, allow_burned_in: bool = False,
                      blackout: BlackoutRecipe | None = None) -> DeidentificationReport:
    """De-identify every DICOM file under ``source`` (a file or a folder) into the new folder ``out``.

    Output files are named ``series-NNN/image-NNNNN.dcm`` (input file names may themselves contain
    identifiers). Files with burned-in text (:func:`burned_in_reason`) are refused unless ``blackout``
    has rectangles for their device (blacked out, Clean Pixel Data recorded) or ``allow_burned_in``.
    Files that are not DICOM or are refused are listed in the report's problems; the output folder
    appears complete or not at all.
    """
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
            unwritable = _unwritable(ds, path.name)
            if unwritable:
                report.problems.append((str(path), unwritable))
                continue
            old_series = str(ds.get("SeriesInstanceUID", ""))
            reason = burned_in_reason(ds)
            cleaned = False
            warning = burned_in_warning(ds, path.name) if reason is None else None
            try:
                if reason is not None:
                    rectangles = blackout.rectangles_for(ds) if blackout is not None else None
                    if rectangles:
                        black_out(ds, rectangles)
                        cleaned = True
                        report.blacked_out += 1
                    elif allow_burned_in:
                        warning = (f"{path.name}: {reason}; exported with its pixels unchanged because "
                                   "burned-in text was allowed.")
                    else:
                        report.refused += 1
                        report.problems.append((str(path), refusal_message(path.name, reason)))
                        continue
                data = deidentify_bytes(ds, deid, clean_pixel_data=cleaned)
            except (ValueError, TypeError, AttributeError, KeyError, OverflowError, RuntimeError,
                    NotImplementedError) as exc:
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
            reasons = "; ".join(m for _, m in report.problems[:3]) or "none found"
            raise ValueError(f"No readable DICOM file in {source} could be de-identified; nothing was "
                             f"written. Problems: {reasons}")
    return report


def read_deidentified(path: str | Path, deidentifier: Deidentifier | None = None) -> Dataset:
    """Read one DICOM file and return its de-identified dataset (pixel data included, not cleaned)."""
    return (deidentifier or Deidentifier()).dataset(read_dataset(Path(path)))


__all__ = ["BlackoutRecipe", "DeidOptions", "Deidentifier", "DeidentificationReport", "black_out",
           "burned_in_reason", "burned_in_warning", "deidentify_bytes", "deidentify_folder",
           "read_deidentified", "refusal_message"]
