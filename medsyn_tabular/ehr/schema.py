"""The schema of a dataset of related EHR tables: roles, keys, time columns, codes (inferred or declared).

Three roles (one table each for the first two):

* ``patients``: one row per patient; its ``key`` (e.g. Synthea ``Id``, OMOP ``person_id``), ``birth``
  (a date, or a year of birth) and optional ``death``;
* ``visits``: one row per visit (Synthea ``encounters``, OMOP ``visit_occurrence``): ``key``, ``patient``
  (foreign key), ``start``, ``stop``, ``class`` (encounter class) and ``code``;
* ``events``: rows attached to a patient and, through ``visit``, to one visit (conditions, medications,
  observations, procedures, ...): ``start``, ``stop``, ``code``, ``value`` (observations).

Every table may also name ``describe`` columns (``DESCRIPTION: CODE``: the description of a code column,
generated from the code so that the two always agree), ``by_code`` columns (e.g. an observation's UNITS,
CATEGORY and TYPE: one value per code, looked up from the code) and other modelled ``columns`` with their
kind (categorical, continuous, integer). Everything else is not modelled: identifiers of tables that are
not patient data (Synthea's ORGANIZATION, PROVIDER, PAYER), free text, and the PHI columns (names,
addresses, SSN: see :mod:`medsyn_tabular.data.phi`), which are left empty in the synthetic output.

:func:`infer_schema` proposes a schema from the tables (names first, then the values: unique keys,
foreign-key containment, date formats) with a reason for every choice; :func:`schema_yaml` writes it as a
YAML file to review and pass back (``medsyn ehr schema FOLDER --out ehr.yaml``). The file holds names and
kinds only, no statistic of the rows. Under differential privacy the declared file is the schema, and
every categorical variable needs its public ``categories`` (or a ``vocabulary`` file of codes with their
descriptions), plus ``birth_years`` and ``end_date`` (docs/ehr.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medsyn_tabular.data.schema import SchemaError, infer_column

ROLES = ("patients", "visits", "events")
COLUMN_KINDS = ("categorical", "continuous", "integer")
#: Formats of time columns: how they are parsed and written back.
TIME_FORMATS = ("date", "datetime-z", "datetime", "year")
#: FHIR resources an event table can be exported as.
FHIR_RESOURCES = ("Condition", "MedicationRequest", "Observation", "Procedure")
#: Code systems of the Synthea export (FHIR ``system`` URIs), by table.
SNOMED, RXNORM, LOINC = "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm", \
    "http://loinc.org"
OMOP_CONCEPT = "https://athena.ohdsi.org/search-terms/terms"  # OMOP concept ids (OHDSI Athena)
#: (file stem, FHIR resource, code system) of event tables modelled by default.
KNOWN_EVENTS = {
    "conditions": ("Condition", SNOMED), "medications": ("MedicationRequest", RXNORM),
    "observations": ("Observation", LOINC), "procedures": ("Procedure", SNOMED),
    "condition_occurrence": ("Condition", OMOP_CONCEPT), "drug_exposure": ("MedicationRequest", OMOP_CONCEPT),
    "measurement": ("Observation", OMOP_CONCEPT), "procedure_occurrence": ("Procedure", OMOP_CONCEPT),
}
_PATIENT_STEMS = ("patients", "patient", "person", "persons", "people")
_VISIT_STEMS = ("encounters", "encounter", "visit_occurrence", "visits", "visit", "admissions")
_BIRTH = re.compile(r"^(birth_?date|birth_?datetime|dob|date_?of_?birth|year_of_birth)$", re.I)
_DEATH = re.compile(r"^(death_?date|death_?datetime|dod|date_?of_?death)$", re.I)
_START = re.compile(r"^(start|date|start_?date|start_?datetime|.*_start_date|.*_start_datetime|.*_date)$",
                    re.I)
_STOP = re.compile(r"^(stop|end|end_?date|end_?datetime|.*_end_date|.*_end_datetime|discharge.*)$", re.I)
_CLASS = re.compile(r"^(encounterclass|encounter_class|class|visit_concept_id)$", re.I)
_VALUE = re.compile(r"^(value|value_as_number|result|value_as_string)$", re.I)
_CODE_NAME = re.compile(r"code$|_concept_id$|_source_value$", re.I)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass
class ColumnSpec:
    """A modelled column that is not a role: its kind, and under DP its public categories."""

    kind: str
    categories: list[Any] | None = None
    min: float | None = None  # public bounds of a number (continuous, integer)
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class TableSpec:
    """One table of the dataset and the role of its columns (see the module docstring)."""

    file: str
    role: str
    model: bool = True
    key: str | None = None
    patient: str | None = None
    visit: str | None = None
    birth: str | None = None
    death: str | None = None
    start: str | None = None
    stop: str | None = None
    code: str | None = None
    klass: str | None = None  # the visit's class column (YAML: ``class``)
    value: str | None = None
    describe: dict[str, str] = field(default_factory=dict)
    by_code: list[str] = field(default_factory=list)
    columns: dict[str, ColumnSpec] = field(default_factory=dict)
    times: dict[str, str] = field(default_factory=dict)  # time column -> format
    key_format: str = "uuid"  # 'uuid' or 'integer': how regenerated keys look
    system: str | None = None  # code system URI (FHIR)
    fhir: str | None = None  # FHIR resource (event tables)
    vocabulary: str | None = None  # declared vocabulary file (codes and their looked-up columns)
    categories: dict[str, list[Any]] = field(default_factory=dict)  # declared values of role columns
    phi: dict[str, str] = field(default_factory=dict)  # column -> Safe Harbor action
    notes: dict[str, str] = field(default_factory=dict)  # column -> why it is not modelled

    @property
    def role_columns(self) -> list[str]:
        """Columns with a structural role (keys, times, code, class, value)."""
        out = [self.key, self.patient, self.visit, self.birth, self.death, self.start, self.stop,
               self.code, self.klass, self.value]
        return [c for c in out if c]

    @property
    def code_columns(self) -> list[str]:
        """Columns whose values are codes with looked-up columns (the code, and any described column)."""
        return list(dict.fromkeys(([self.code] if self.code else []) + list(self.describe.values())))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "role": self.role}
        if not self.model:
            out["model"] = False
        for key in ("key", "patient", "visit", "birth", "death", "start", "stop", "code"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.klass:
            out["class"] = self.klass
        if self.value:
            out["value"] = self.value
        if self.describe:
            out["describe"] = dict(self.describe)
        if self.by_code:
            out["by_code"] = list(self.by_code)
        out["columns"] = {k: v.to_dict() for k, v in self.columns.items()}
        out["times"] = dict(self.times)
        out["key_format"] = self.key_format
        for key in ("system", "fhir", "vocabulary"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.categories:
            out["categories"] = {k: list(v) for k, v in self.categories.items()}
        if self.phi:
            out["phi"] = dict(self.phi)
        if self.notes:
            out["notes"] = dict(self.notes)
        return out

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> TableSpec:
        if not isinstance(data, dict):
            raise SchemaError(f"Table {name!r}: expected a mapping of settings.")
        known = {"file", "role", "model", "key", "patient", "visit", "birth", "death", "start", "stop",
                 "code",
                 "class", "value", "describe", "by_code", "columns", "times", "key_format", "system", "fhir",
                 "vocabulary", "categories", "phi", "notes"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SchemaError(f"Table {name!r}: unknown setting(s) {unknown}; use "
                              f"{', '.join(sorted(known))}.")
        columns = {}
        for col, spec in (data.get("columns") or {}).items():
            spec = {"kind": spec} if isinstance(spec, str) else dict(spec or {})
            if spec.get("kind") not in COLUMN_KINDS:
                raise SchemaError(f"Table {name!r}, column {col!r}: kind must be one of "
                                  f"{', '.join(COLUMN_KINDS)} (got {spec.get('kind')!r}).")
            extra = sorted(set(spec) - {"kind", "categories", "min", "max"})
            if extra:
                raise SchemaError(f"Table {name!r}, column {col!r}: unknown setting(s) {extra}; use kind, "
                                  "categories, min, max.")
            if spec.get("categories") is not None and (not isinstance(spec["categories"], list)
                                                       or not spec["categories"]):
                raise SchemaError(f"Table {name!r}, column {col!r}: categories must be a non-empty list.")
            columns[str(col)] = ColumnSpec(spec["kind"], spec.get("categories"), spec.get("min"),
                                           spec.get("max"))
        spec = cls(file=str(data.get("file") or f"{name}.csv"), role=str(data.get("role", "")),
                   model=bool(data.get("model", True)), key=data.get("key"), patient=data.get("patient"),
                   visit=data.get("visit"), birth=data.get("birth"), death=data.get("death"),
                   start=data.get("start"), stop=data.get("stop"), code=data.get("code"),
                   klass=data.get("class"), value=data.get("value"),
                   describe={str(k): str(v) for k, v in (data.get("describe") or {}).items()},
                   by_code=[str(c) for c in data.get("by_code") or []], columns=columns,
                   times={str(k): str(v) for k, v in (data.get("times") or {}).items()},
                   key_format=str(data.get("key_format", "uuid")), system=data.get("system"),
                   fhir=data.get("fhir"), vocabulary=data.get("vocabulary"),
                   categories={str(k): list(v) for k, v in (data.get("categories") or {}).items()},
                   phi={str(k): str(v) for k, v in (data.get("phi") or {}).items()},
                   notes={str(k): str(v) for k, v in (data.get("notes") or {}).items()})
        spec.validate(name)
        return spec

    def validate(self, name: str) -> None:
        """Refuse impossible declarations with a message naming the table and the fix."""
        if self.role not in ROLES:
            raise SchemaError(f"Table {name!r}: role must be one of {', '.join(ROLES)} (got {self.role!r}).")
        if self.key_format not in ("uuid", "integer"):
            raise SchemaError(f"Table {name!r}: key_format must be uuid or integer.")
        for col, fmt in self.times.items():
            if fmt not in TIME_FORMATS:
                raise SchemaError(f"Table {name!r}, time column {col!r}: format must be one of "
                                  f"{', '.join(TIME_FORMATS)} (got {fmt!r}).")
        if self.fhir is not None and self.fhir not in FHIR_RESOURCES:
            raise SchemaError(f"Table {name!r}: fhir must be one of {', '.join(FHIR_RESOURCES)}.")
        need = {"patients": ("key", "birth"), "visits": ("key", "patient", "start"),
                "events": ("patient", "start", "code")}[self.role]
        missing = [k for k in need if not getattr(self, k)]
        if missing and self.model:
            raise SchemaError(f"Table {name!r} ({self.role}) needs {', '.join(missing)}; name the column(s) "
                              "in the schema file, or set 'model: false'.")
        for col in [c for c in (self.birth, self.death, self.start, self.stop) if c]:
            if col not in self.times:
                raise SchemaError(f"Table {name!r}: time column {col!r} has no format under 'times' "
                                  f"({', '.join(TIME_FORMATS)}).")
        for described, code in self.describe.items():
            if code != self.code and code not in self.columns:
                raise SchemaError(f"Table {name!r}: {described!r} describes {code!r}, which is neither the "
                                  "code column nor a modelled categorical column.")
        for col, values in self.categories.items():
            if col not in (self.klass, self.code, self.value) or not isinstance(values, list) or not values:
                raise SchemaError(f"Table {name!r}: 'categories' declares the values of the class, code or "
                                  f"value column as a non-empty list ({col!r} is none of them).")
        clash = set(self.role_columns) & (set(self.columns) | set(self.describe) | set(self.by_code))
        if clash:
            raise SchemaError(f"Table {name!r}: column(s) {sorted(clash)} have a role and are also listed "
                              "as columns, describe or by_code; keep one.")


@dataclass
class EHRSchema:
    """All tables of a dataset by name (file stem), and the dataset-wide public facts."""

    tables: dict[str, TableSpec]
    layout: str = "generic"  # 'synthea', 'omop' or 'generic' (informational)
    end_date: str | None = None  # last date of the export: nothing is generated after it
    birth_years: list[int] | None = None  # [first, last] year of birth that may be generated
    max_visits: int = 512  # visits per patient used (the first ones in time)
    max_rows: int = 4096  # rows per patient and event table used (chosen at random beyond)
    reasons: dict[str, str] = field(default_factory=dict)  # 'table' or 'table.column' -> why (inference)

    # -- the tables by role -----------------------------------------------------------------------
    def one(self, role: str) -> tuple[str, TableSpec]:
        found = [(n, t) for n, t in self.tables.items() if t.role == role and t.model]
        if len(found) != 1:
            raise SchemaError(f"The schema needs exactly one modelled {role} table (found {len(found)}: "
                              f"{', '.join(n for n, _ in found) or 'none'}).")
        return found[0]

    @property
    def patients(self) -> tuple[str, TableSpec]:
        return self.one("patients")

    @property
    def visits(self) -> tuple[str, TableSpec]:
        return self.one("visits")

    @property
    def events(self) -> list[tuple[str, TableSpec]]:
        return [(n, t) for n, t in self.tables.items() if t.role == "events" and t.model]

    def validate(self) -> EHRSchema:
        for name, spec in self.tables.items():
            spec.validate(name)
        self.patients, self.visits  # noqa: B018  (exactly one of each)
        for name, spec in self.events:
            if not spec.visit:
                raise SchemaError(f"Event table {name!r} needs 'visit': the column holding the visit key "
                                  f"(e.g. ENCOUNTER or visit_occurrence_id).")
        if self.birth_years is not None:
            if (not isinstance(self.birth_years, list) or len(self.birth_years) != 2
                    or not all(isinstance(y, int) for y in self.birth_years)
                    or self.birth_years[0] > self.birth_years[1]):
                raise SchemaError("birth_years must be [first, last] years, e.g. [1900, 2025].")
        if self.end_date is not None:
            try:
                pd.Timestamp(self.end_date)
            except (TypeError, ValueError) as exc:
                raise SchemaError("end_date must be a date such as 2024-12-31.") from exc
        for key in ("max_visits", "max_rows"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SchemaError(f"{key} must be a whole number of at least 1 (got {value!r}).")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "end_date": self.end_date, "birth_years": self.birth_years,
                "max_visits": self.max_visits, "max_rows": self.max_rows,
                "tables": {n: t.to_dict() for n, t in self.tables.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EHRSchema:
        if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
            raise SchemaError("An EHR schema file needs a 'tables' section (write one with `medsyn ehr "
                              "schema "
                              "FOLDER --out ehr.yaml`).")
        unknown = sorted(set(data) - {"layout", "end_date", "birth_years", "max_visits", "max_rows", "tables",
                                      "unit"})
        if unknown:
            raise SchemaError(f"Unknown setting(s) {unknown} in the EHR schema file.")
        if data.get("unit", "patient") != "patient":
            raise SchemaError("The privacy unit of an EHR dataset is always the patient (all their rows); "
                              "remove the 'unit' line or set 'unit: patient'.")
        end = data.get("end_date")
        return cls({str(n): TableSpec.from_dict(str(n), t) for n, t in data["tables"].items()},
                   str(data.get("layout") or "generic"), None if end is None else str(end),
                   data.get("birth_years"), data.get("max_visits", 512),
                   data.get("max_rows", 4096)).validate()


def load_schema(source: str | Path | dict | EHRSchema) -> EHRSchema:
    """An :class:`EHRSchema` from a YAML/JSON file, a dict or a schema (returned as is)."""
    if isinstance(source, EHRSchema):
        return source
    if isinstance(source, dict):
        return EHRSchema.from_dict(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"No such EHR schema file: {path}")
    text = path.read_text(encoding="utf-8-sig")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise SchemaError(f"{path.name}: cannot parse the schema file ({exc}).") from exc
    schema = EHRSchema.from_dict(data)
    base = path.parent
    for spec in schema.tables.values():  # vocabulary files are relative to the schema file
        if spec.vocabulary and not Path(spec.vocabulary).is_absolute():
            spec.vocabulary = str(base / spec.vocabulary)
    return schema


# -- inference -------------------------------------------------------------------------------------
def _time_format(values: pd.Series) -> str | None:
    """'date', 'datetime-z', 'datetime' or 'year' from the shape of the values (not their content)."""
    present = values.dropna()
    if present.empty:
        return None
    if pd.api.types.is_datetime64_any_dtype(present):
        return "datetime"
    if pd.api.types.is_numeric_dtype(present):
        numbers = present.astype(float)
        return "year" if ((numbers % 1 == 0) & (numbers > 1000) & (numbers < 3000)).all() else None
    text = present.astype(str).str.strip().iloc[:500]
    if text.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all():
        return "date"
    if text.str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z").all():
        return "datetime-z"
    if text.str.fullmatch(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?").all():
        return "datetime"
    return None


def _unique_key(df: pd.DataFrame, col: str) -> bool:
    s = df[col]
    return bool(s.notna().all() and s.is_unique)


def _key_of(stem: str, df: pd.DataFrame) -> str | None:
    singular = stem[:-1] if stem.endswith("s") else stem
    candidates = ["Id", "id", "ID", f"{stem}_id", f"{singular}_id", "key"]
    lower = {c.lower(): c for c in df.columns}
    for name in candidates:
        col = lower.get(name.lower())
        if col is not None and _unique_key(df, col):
            return col
    return None


def _key_format(values: pd.Series) -> str:
    present = values.dropna().astype(str).iloc[:200]
    return "uuid" if len(present) and present.str.fullmatch(_UUID).all() else "integer"


def _contained(child: pd.Series, parent: pd.Series) -> float:
    """Share of the child's non-missing values found among the parent's keys (compared as text)."""
    from medsyn_tabular.ehr.codecs import code_key

    values = child.dropna().map(code_key)
    if values.empty:
        return 0.0
    return float(values.isin(set(parent.dropna().map(code_key))).mean())


def _fk(df: pd.DataFrame, target_key: pd.Series, names: tuple[str, ...]) -> str | None:
    """The column of ``df`` that refers to a table (named like it, and its values among its keys)."""
    lower = {c.lower(): c for c in df.columns}
    for name in names:
        col = lower.get(name)
        if col is not None and _contained(df[col], target_key) >= 0.9:
            return col
    return None


def _first(df: pd.DataFrame, pattern: re.Pattern, skip: set[str], formats: dict[str, str]) -> str | None:
    for col in df.columns:
        if col not in skip and pattern.match(col) and col in formats:
            return col
    return None


def _code_column(stem: str, df: pd.DataFrame, skip: set[str]) -> str | None:
    lower = {c.lower(): c for c in df.columns if c not in skip}
    if "code" in lower:
        return lower["code"]
    domain = stem.split("_")[0].rstrip("s")
    for name in (f"{domain}_concept_id", f"{stem}_concept_id"):
        if name in lower:
            return lower[name]
    concept = [c for n, c in lower.items() if n.endswith("_concept_id") and "type" not in n
               and "source" not in n and "unit" not in n]
    return concept[0] if concept else None


def _functions_of(df: pd.DataFrame, code: str, columns: list[str]) -> list[str]:
    """Columns that hold one value per code (in at least 98 % of the codes)."""
    out = []
    groups = df.groupby(df[code].astype(str), dropna=True)
    for col in columns:
        per_code = groups[col].nunique(dropna=True)
        if len(per_code) and float((per_code <= 1).mean()) >= 0.98 and df[col].notna().any():
            out.append(col)
    return out


def infer_schema(tables: dict[str, pd.DataFrame], files: dict[str, str] | None = None,
                 layout: str | None = None) -> EHRSchema:
    """Propose an :class:`EHRSchema` for ``tables`` (file stem -> DataFrame; ``files``: stem -> file name),
    with a reason per choice in ``schema.reasons``. Raises :class:`SchemaError` when no patient table or no
    visit table is found."""
    from medsyn_tabular.data.phi import detect_phi

    stems = {s.lower(): s for s in tables}
    layout = layout or ("synthea" if {"patients", "encounters"} <= set(stems)
                        else "omop" if {"person", "visit_occurrence"} <= set(stems) else "generic")
    reasons: dict[str, str] = {}
    formats = {name: {c: f for c in df.columns if (f := _time_format(df[c])) is not None}
               for name, df in tables.items()}
    keys = {name: _key_of(name, df) for name, df in tables.items()}

    # the patient table: named like one and holding a birth column
    patient_name = next((stems[s] for s in _PATIENT_STEMS if s in stems), None)
    if patient_name is None:
        patient_name = next((n for n, df in tables.items() if any(_BIRTH.match(c) for c in df.columns)
                             and keys[n]), None)
    if patient_name is None or keys.get(patient_name) is None:
        raise SchemaError("No patient table found: a table named patients/person with a unique key column "
                          "(Id, person_id) and a birth column is needed. Declare the roles in a schema file.")
    pkey = tables[patient_name][keys[patient_name]]
    reasons[patient_name] = "patient table (its name, a unique key and a birth column)"
    patient_fk_names = ("patient", "patientid", "patient_id", "person_id", "subject_id", "person")
    visit_name = next((stems[s] for s in _VISIT_STEMS if s in stems and keys.get(stems[s])), None)
    if visit_name is None:
        raise SchemaError("No visit table found: a table named encounters/visit_occurrence with a unique key "
                          "and a foreign key to the patients is needed. Declare the roles in a schema file.")
    vkey = tables[visit_name][keys[visit_name]]
    reasons[visit_name] = "visit table (its name, a unique key, and rows that point at patients)"
    visit_fk_names = ("encounter", "encounter_id", "encounterid", "visit_occurrence_id", "visit_id",
                      "visit", "admission_id", "hadm_id")

    specs: dict[str, TableSpec] = {}
    for name, df in tables.items():
        fmt = formats[name]
        skip: set[str] = set()
        if name == patient_name:
            spec = TableSpec(file=name, role="patients", key=keys[name])
            spec.birth = next((c for c in df.columns if _BIRTH.match(c)), None)
            spec.death = next((c for c in df.columns if _DEATH.match(c)), None)
        else:
            patient = _fk(df, pkey, patient_fk_names)
            if patient is None:
                specs[name] = TableSpec(file=(files or {}).get(name, f"{name}.csv"), role="events",
                                        model=False)
                reasons[name] = "not modelled: no column refers to the patients (a reference table)"
                continue
            if name == visit_name:
                spec = TableSpec(file=name, role="visits", key=keys[name], patient=patient)
                spec.klass = next((c for c in df.columns if _CLASS.match(c)), None)
            else:
                spec = TableSpec(file=name, role="events", key=keys[name], patient=patient,
                                 visit=_fk(df, vkey, visit_fk_names))
            skip = {c for c in (spec.key, spec.patient, spec.visit, spec.klass) if c}
            spec.start = _first(df, _START, skip, fmt)
            spec.stop = _first(df, _STOP, skip | {spec.start}, fmt)
            spec.code = _code_column(name, df, skip | {spec.start, spec.stop})
            if spec.role == "events":
                spec.value = next((c for c in df.columns if _VALUE.match(c) and c not in skip), None)
                known = KNOWN_EVENTS.get(name.lower())
                if not spec.visit or not spec.start or not spec.code:
                    spec.model = False
                    reasons[name] = "not modelled: it needs a visit key, a start time and a code column"
                elif known is not None:
                    spec.fhir, spec.system = known
                    reasons[name] = f"event table, exported to FHIR as {known[0]}"
                elif layout == "generic":
                    reasons[name] = "event table (not exported to FHIR: set 'fhir' to one of " \
                                    f"{', '.join(FHIR_RESOURCES)})"
                else:  # the other tables of a known layout (Synthea allergies, careplans ...)
                    spec.model = False
                    reasons[name] = "not modelled by default (set 'model: true' to add it)"
        spec.file = (files or {}).get(name, f"{name}.csv")
        role_cols = set(spec.role_columns)
        spec.times = {c: fmt[c] for c in (spec.birth, spec.death, spec.start, spec.stop) if c and c in fmt}
        for col in (spec.death, spec.stop):  # an empty column (no one died yet) has no format to read
            if col and col not in spec.times and df[col].isna().all():
                spec.times[col] = "date" if col == spec.death else spec.times.get(spec.start, "datetime")
        if spec.key:
            spec.key_format = _key_format(df[spec.key])
        # descriptions of codes: DESCRIPTION -> CODE, REASONDESCRIPTION -> REASONCODE, X_name -> X
        for col in df.columns:
            m = re.fullmatch(r"(.*?)_?(description|desc|name)", col, re.I)
            if m and col not in role_cols:
                base = m.group(1)
                target = spec.code if base == "" else next(
                    (c for c in df.columns if c.lower() in (f"{base}code".lower(), f"{base}_code".lower(),
                                                            base.lower(), f"{base}_concept_id".lower())
                     and c != col), None)
                if target and target not in (spec.key, spec.patient, spec.visit):
                    spec.describe[col] = target
        phi = {f.column: f for f in detect_phi(df)}
        others = [c for c in df.columns if c not in role_cols and c not in spec.describe]
        for col in others:
            kind = infer_column(col, df[col]).kind
            if kind == "integer" and (_CODE_NAME.search(col) or col in spec.describe.values()):
                kind = "categorical"  # numeric codes (SNOMED, concept ids) are labels, not quantities
            if col in phi and phi[col].action == "drop":
                spec.phi[col] = "drop"
                spec.notes[col] = f"PHI ({phi[col].category}): left empty"
            elif col.lower() in patient_fk_names + visit_fk_names or kind == "identifier":
                spec.notes[col] = "an identifier (of a table that is not modelled): left empty"
            elif kind in ("text", "datetime", "empty"):
                spec.notes[col] = f"{kind} column: not modelled, left empty"
            elif col in phi and phi[col].action == "zip3":
                spec.phi[col] = "zip3"
                spec.columns[col] = ColumnSpec("categorical")
            else:
                spec.columns[col] = ColumnSpec({"boolean": "categorical"}.get(kind, kind))
                if col in phi and phi[col].action in ("age90", "keep"):
                    spec.phi[col] = phi[col].action
        for described, target in list(spec.describe.items()):
            if target != spec.code and (target not in spec.columns
                                        or spec.columns[target].kind != "categorical"):
                spec.columns.pop(described, None)
                spec.notes[described] = "describes a column that is not modelled: left empty"
                del spec.describe[described]
        if spec.code and spec.role != "patients":
            looked_up = _functions_of(df, spec.code, [c for c, s in spec.columns.items()
                                                      if s.kind == "categorical"
                                                      and c not in spec.describe.values()])
            for col in looked_up:
                spec.columns.pop(col)
                spec.by_code.append(col)
        specs[name] = spec
    schema = EHRSchema(specs, layout, reasons=reasons)
    return schema.validate()


# -- the reviewable file ---------------------------------------------------------------------------
def schema_yaml(schema: EHRSchema) -> str:
    """The schema as a commented YAML file to review and pass back (``medsyn ehr fit --schema``). It holds
    names, roles and kinds only: no value or count read from the rows."""
    import yaml

    head = [
        "# MedSyn EHR schema: review every line, then pass it back with --schema FILE.",
        "# Roles: patients (one row per patient), visits (encounters), events (rows of a visit).",
        "# Keys are regenerated in the synthetic data; columns under 'notes' are not modelled (left empty).",
        "# The privacy unit is the patient with all their rows.",
        "# Under differential privacy everything declared here is PUBLIC (it costs no privacy budget): add",
        "# 'categories' to every categorical column, a 'vocabulary' file (codes with their descriptions) to",
        "# every code column, and birth_years and end_date, from a data dictionary or the code system,",
        "# never copied from the data itself (docs/ehr.md).",
    ]
    for key, why in schema.reasons.items():
        head.append(f"#   {key}: {why}")
    body = yaml.safe_dump(schema.to_dict(), sort_keys=False, allow_unicode=True, width=110)
    return "\n".join(head) + "\n" + body
