"""FHIR R4 Bundles of an EHR dataset: one ``collection`` Bundle per patient with its Patient, Encounter,
Condition, MedicationRequest, Observation and Procedure resources, validated with ``fhir.resources``.

Validation: ``fhir.resources`` (pydantic models generated from the FHIR specification; maintained) checks
every element's type, cardinality and format (ids, dates, dateTimes, codes, references). It ships FHIR
R5, R4B (4.3.0) and STU3; the Bundles are validated against **R4B**, the R4 line's release that the
library maintains (R4B changed none of the six resources used here in a way these Bundles touch; see
docs/ehr.md). ``fhir.resources`` does not check terminology bindings, so the codes this module writes
for required bindings (gender, statuses, encounter class) come from fixed tables below.

Mapping (Synthea and OMOP names are examples; the schema says which column has which role):

* Patient: ``id`` = key, ``gender`` from a GENDER/sex/gender_concept_id column, ``birthDate``,
  ``deceasedDateTime``;
* Encounter (the visits): status ``finished``, ``class`` (HL7 v3 ActCode from the encounter class),
  ``type`` (the visit code), ``period``, ``reasonCode``;
* each event table by its ``fhir`` resource: Condition (``onsetDateTime``, ``abatementDateTime``,
  clinical status active/resolved), MedicationRequest (intent ``order``, ``authoredOn``, status
  active/completed), Observation (status ``final``, ``category``, ``effectiveDateTime``,
  ``valueQuantity`` with UCUM units or ``valueString``), Procedure (status ``completed``,
  ``performedPeriod``). Codes carry the table's ``system`` and, when looked up, their description.

References inside a Bundle are ``urn:uuid:`` full URLs; resources without a key get a UUID derived from
the patient's key and the row (so the Bundle is the same every time it is written).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from medsyn_tabular.ehr.codecs import code_key
from medsyn_tabular.ehr.dataset import EHRDataset

FHIR_VERSION = "4.3.0 (R4B)"
#: Encounter class (Synthea ENCOUNTERCLASS, OMOP visit concept) -> HL7 v3 ActCode.
ACT_CODE = {"ambulatory": "AMB", "outpatient": "AMB", "wellness": "AMB", "urgentcare": "AMB",
            "emergency": "EMER", "inpatient": "IMP", "home": "HH", "hospice": "HH", "snf": "NONAC",
            "virtual": "VR", "9201": "IMP", "9202": "AMB", "9203": "EMER", "262": "EMER", "581476": "HH",
            "42898160": "NONAC"}
ACT_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
GENDER = {"m": "male", "male": "male", "f": "female", "female": "female", "8507": "male", "8532": "female"}
OBSERVATION_CATEGORIES = {"social-history", "vital-signs", "imaging", "laboratory", "procedure", "survey",
                          "exam", "therapy", "activity"}
#: System of reason codes (Synthea's REASONCODE columns hold SNOMED CT codes whatever the table's system).
SNOMED_FALLBACK = "http://snomed.info/sct"
_NAMESPACE = uuid.UUID("6f1d1c55-64a4-4e3e-9a0b-3c1f7a0f6a11")  # MedSyn's namespace for derived ids


def _id(value: Any) -> str:
    return str(value)


def _ref(key: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{key}"}


def _uuid_for(*parts: Any) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def _time(value: pd.Timestamp, date_only: bool) -> str | None:
    if value is None or pd.isna(value):
        return None
    return value.strftime("%Y-%m-%d") if date_only else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _concept(code: Any, system: str | None, display: Any = None) -> dict[str, Any] | None:
    key = code_key(code)
    if key is None:
        return None
    coding = {"code": key}
    if system:
        coding["system"] = system
    if display is not None and not (isinstance(display, float) and np.isnan(display)):
        coding["display"] = str(display)
    out: dict[str, Any] = {"coding": [coding]}
    if "display" in coding:
        out["text"] = coding["display"]
    return out


def _clean(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if v is not None and v != [] and v != {}}


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


class _Context:
    """Per-dataset lookups: keys as FHIR ids, parsed times, description columns."""

    def __init__(self, data: EHRDataset):
        self.data = data
        s = data.schema
        self.pname, self.pspec = s.patients
        self.vname, self.vspec = s.visits

    def described(self, spec, column: str) -> str | None:
        return next((d for d, target in spec.describe.items() if target == column), None)


def _patient_resource(ctx: _Context, row: dict, birth: pd.Timestamp, death) -> dict[str, Any]:
    p = ctx.pspec
    gender_col = next((c for c in p.columns if c.lower() in ("gender", "sex", "gender_concept_id")), None)
    gender = GENDER.get(str(code_key(row.get(gender_col)) or "").lower(), "unknown") if gender_col else None
    death_value = _time(death, False) if death is not None and not pd.isna(death) else None
    return _clean({"resourceType": "Patient", "id": _id(row[p.key]), "gender": gender,
                   "birthDate": _time(birth, True), "deceasedDateTime": death_value})


def bundles(data: EHRDataset) -> Iterator[tuple[str, dict[str, Any]]]:
    """(patient key, Bundle as a JSON dict) for every patient of ``data``."""
    ctx = _Context(data)
    s = data.schema
    P = data.table(ctx.pname)
    pkeys = P[ctx.pspec.key].map(code_key)
    births = data.times(ctx.pname, ctx.pspec.birth)
    deaths = data.times(ctx.pname, ctx.pspec.death) if ctx.pspec.death else pd.Series([pd.NaT] * len(P))
    entries: dict[str, list[dict]] = {k: [] for k in pkeys}
    for i, row in enumerate(P.to_dict("records")):
        entries[pkeys.iloc[i]].append(_patient_resource(ctx, row, births.iloc[i], deaths.iloc[i]))

    V = data.table(ctx.vname)
    v = ctx.vspec
    v_start, v_stop = data.times(ctx.vname, v.start), (data.times(ctx.vname, v.stop) if v.stop else None)
    v_date = v.times.get(v.start) == "date"
    vkeys = V[v.key].map(code_key)
    for i, row in enumerate(V.to_dict("records")):
        pkey = code_key(row[v.patient])
        if pkey not in entries:
            continue
        klass = str(code_key(row.get(v.klass)) or "") if v.klass else ""
        period = _clean({"start": _time(v_start.iloc[i], v_date),
                         "end": _time(v_stop.iloc[i], v_date) if v_stop is not None else None})
        reason_col = next((c for c in v.columns if "reason" in c.lower()), None)
        enc = {"resourceType": "Encounter", "id": vkeys.iloc[i], "status": "finished",
               "class": {"system": ACT_SYSTEM, "code": ACT_CODE.get(klass.lower(), "AMB"),
                         **({"display": klass} if klass else {})},
               "type": [t for t in [_concept(row.get(v.code), v.system,
                                             row.get(ctx.described(v, v.code)))] if t] if v.code else None,
               "subject": _ref(pkey), "period": period or None,
               "reasonCode": [c for c in [_concept(row.get(reason_col), v.system,
                                                   row.get(ctx.described(v, reason_col)))] if c]
               if reason_col else None}
        entries[pkey].append(_clean(enc))

    for name, spec in s.events:
        if not spec.fhir:
            continue
        E = data.table(name)
        start = data.times(name, spec.start)
        stop = data.times(name, spec.stop) if spec.stop else None
        date_only = spec.times.get(spec.start) == "date"
        reason_col = next((c for c in spec.columns if "reason" in c.lower()), None)
        for i, row in enumerate(E.to_dict("records")):
            pkey = code_key(row[spec.patient])
            if pkey not in entries:
                continue
            rid = code_key(row[spec.key]) if spec.key and _is_uuid(code_key(row[spec.key])) else \
                _uuid_for(name, pkey, i)
            code = _concept(row.get(spec.code), spec.system, row.get(ctx.described(spec, spec.code)))
            vkey = code_key(row.get(spec.visit)) if spec.visit else None
            base = {"id": rid, "subject": _ref(pkey), "encounter": _ref(vkey) if vkey else None}
            t0 = _time(start.iloc[i], date_only)
            t1 = _time(stop.iloc[i], date_only) if stop is not None else None
            reason = [c for c in [_concept(row.get(reason_col), SNOMED_FALLBACK,
                                           row.get(ctx.described(spec, reason_col)))] if c] \
                if reason_col else None
            if spec.fhir == "Condition":
                res = {"resourceType": "Condition", **base, "code": code,
                       "clinicalStatus": {"coding": [{
                           "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                           "code": "resolved" if t1 else "active"}]},
                       "verificationStatus": {"coding": [{
                           "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                           "code": "confirmed"}]},
                       "onsetDateTime": t0, "abatementDateTime": t1, "recordedDate": t0}
            elif spec.fhir == "MedicationRequest":
                res = {"resourceType": "MedicationRequest", **base, "status": "completed" if t1 else "active",
                       "intent": "order", "medicationCodeableConcept": code, "authoredOn": t0,
                       "reasonCode": reason}
            elif spec.fhir == "Observation":
                category_col = next((c for c in spec.by_code + list(spec.columns)
                                     if c.lower() == "category"), None)
                category = str(row.get(category_col) or "") if category_col else ""
                unit_col = next((c for c in spec.by_code + list(spec.columns)
                                 if c.lower() in ("units", "unit", "unit_source_value")), None)
                value = row.get(spec.value) if spec.value else None
                number = _number(value)
                res = {"resourceType": "Observation", **base, "status": "final", "code": code,
                       "effectiveDateTime": t0,
                       "category": [{"coding": [{
                           "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                           "code": category}]}] if category in OBSERVATION_CATEGORIES else None}
                if number is not None:
                    unit = row.get(unit_col) if unit_col else None
                    has_unit = unit is not None and not (isinstance(unit, float) and np.isnan(unit))
                    res["valueQuantity"] = _clean({
                        "value": number, "unit": str(unit) if has_unit else None,
                        "system": "http://unitsofmeasure.org" if has_unit else None,
                        "code": str(unit) if has_unit else None})
                elif value is not None and not (isinstance(value, float) and np.isnan(value)):
                    res["valueString"] = str(value)
            else:  # Procedure
                res = {"resourceType": "Procedure", **base, "status": "completed", "code": code,
                       "performedPeriod": _clean({"start": t0, "end": t1}) or None, "reasonCode": reason}
            entries[pkey].append(_clean(res))

    for pkey, resources in entries.items():
        bundle = {"resourceType": "Bundle", "id": _uuid_for("bundle", pkey), "type": "collection",
                  "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]}
        yield pkey, bundle


def validate(bundle: dict[str, Any]) -> None:
    """Validate one Bundle (JSON dict) with ``fhir.resources`` (R4B); raises ``ValueError`` saying which
    element is wrong."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ValueError(f"FHIR Bundle is not valid at {where}: {first.get('msg')} "
                         f"({exc.error_count()} error(s)).") from None


def zip_bytes(data: EHRDataset, check: bool = True, limit: int | None = None) -> bytes:
    """One ``<patient>.json`` Bundle per patient in a zip (each validated unless ``check`` is False)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (pkey, bundle) in enumerate(bundles(data)):
            if limit is not None and i >= limit:
                break
            if check:
                validate(bundle)
            zf.writestr(f"{pkey}.json", json.dumps(bundle, indent=1))
    return buf.getvalue()


def write_bundles(data: EHRDataset, folder, check: bool = True) -> int:
    """Write one validated Bundle per patient into ``folder`` (created); returns how many."""
    from pathlib import Path

    from medsyn_core.files import atomic_write_text, private_mkdir

    folder = private_mkdir(Path(folder))
    n = 0
    for pkey, bundle in bundles(data):
        if check:
            validate(bundle)
        atomic_write_text(folder / f"{pkey}.json", json.dumps(bundle, indent=1))
        n += 1
    return n
