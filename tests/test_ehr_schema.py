"""The EHR dataset of related tables: roles, keys and time columns inferred for review, the YAML schema,
declared schemas, the OMOP CDM subset as a second layout, and readable errors."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml
from ehr_helpers import SAMPLE, sample_data

from medsyn_tabular.data.schema import SchemaError
from medsyn_tabular.ehr.dataset import read_folder, read_source
from medsyn_tabular.ehr.schema import EHRSchema, load_schema, schema_yaml


def test_the_synthea_sample_is_read_with_its_roles_keys_times_and_phi():
    data = sample_data()
    s = data.schema
    assert s.layout == "synthea"
    assert s.patients[0] == "patients" and s.patients[1].key == "Id"
    assert (s.patients[1].birth, s.patients[1].death) == ("BIRTHDATE", "DEATHDATE")
    name, v = s.visits
    assert name == "encounters" and (v.key, v.patient, v.start, v.stop) == ("Id", "PATIENT", "START", "STOP")
    assert v.klass == "ENCOUNTERCLASS" and v.code == "CODE"
    assert v.describe == {"DESCRIPTION": "CODE", "REASONDESCRIPTION": "REASONCODE"}
    events = dict(s.events)
    assert set(events) == {"conditions", "medications", "observations", "procedures"}
    obs = events["observations"]
    assert (obs.visit, obs.start, obs.code, obs.value, obs.fhir) == ("ENCOUNTER", "DATE", "CODE", "VALUE",
                                                                     "Observation")
    assert set(obs.by_code) == {"UNITS", "CATEGORY", "TYPE"}  # one value per code: looked up from it
    assert events["conditions"].times == {"START": "date", "STOP": "date"}
    assert events["medications"].times["START"] == "datetime-z"
    phi = s.patients[1].phi
    assert {phi[c] for c in ("FIRST", "LAST", "SSN", "ADDRESS", "CITY")} == {"drop"} and phi["ZIP"] == "zip3"
    for col in ("ORGANIZATION", "PROVIDER", "PAYER"):  # keys of tables that are not patient data
        assert col not in v.columns and col in v.notes


def test_the_schema_yaml_holds_no_value_of_the_rows_and_reads_back(tmp_path):
    data = sample_data()
    text = schema_yaml(data.schema)
    values = set()
    for df in data.tables.values():
        for col in df.columns:
            values |= {str(x) for x in df[col].dropna().astype(str) if len(str(x)) >= 6}
    assert not [v for v in values if v in text and v not in data.schema.to_dict().__repr__()]
    assert "999-" not in text and "Hills Branch" not in text and "8302-2" not in text
    (tmp_path / "ehr.yaml").write_text(text)
    again = load_schema(tmp_path / "ehr.yaml")
    assert again.to_dict() == data.schema.to_dict()


def test_declared_schemas_are_checked_with_readable_errors(tmp_path):
    base = sample_data().schema.to_dict()
    bad_role = yaml.safe_load(yaml.safe_dump(base))
    bad_role["tables"]["conditions"]["role"] = "diagnoses"
    with pytest.raises(SchemaError, match="conditions.*role must be one of"):
        EHRSchema.from_dict(bad_role)
    no_visit = yaml.safe_load(yaml.safe_dump(base))
    del no_visit["tables"]["conditions"]["visit"]
    with pytest.raises(SchemaError, match="conditions.*needs 'visit'"):
        EHRSchema.from_dict(no_visit)
    with pytest.raises(SchemaError, match="privacy unit of an EHR dataset is always the patient"):
        EHRSchema.from_dict({**base, "unit": "row"})
    missing = yaml.safe_load(yaml.safe_dump(base))
    missing["tables"]["encounters"]["columns"]["NO_SUCH_COLUMN"] = {"kind": "categorical"}
    with pytest.raises(SchemaError, match="encounters.*NO_SUCH_COLUMN"):
        read_folder(SAMPLE, missing)
    names = yaml.safe_load(yaml.safe_dump(base))  # a declaration that would model the patients' names
    names["tables"]["patients"]["columns"]["FIRST"] = {"kind": "categorical"}
    with pytest.raises(SchemaError, match=r"\['FIRST'\] are named like direct identifiers"):
        read_folder(SAMPLE, names)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SchemaError, match="no CSV/TSV or Parquet tables"):
        read_folder(empty)


def test_a_zip_of_the_folder_reads_like_the_folder(tmp_path):
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", root_dir=SAMPLE.parent,
                                  base_dir=SAMPLE.name)
    data = read_source(archive)
    assert set(data.tables) == set(sample_data().tables)
    assert data.schema.to_dict() == sample_data().schema.to_dict()


def omop_subset(folder) -> None:
    """The Synthea sample converted to the OMOP CDM subset (person, visit_occurrence,
    condition_occurrence, drug_exposure, measurement) with OMOP column names and integer keys. The concept
    ids are the source codes (as in an OMOP ETL before vocabulary mapping): the layout is what is tested."""
    data = sample_data()
    P, V = data.tables["patients"], data.tables["encounters"]
    pid = {k: i + 1 for i, k in enumerate(P["Id"])}
    vid = {k: i + 1 for i, k in enumerate(V["Id"])}
    birth = pd.to_datetime(P["BIRTHDATE"])
    pd.DataFrame({"person_id": P["Id"].map(pid), "gender_concept_id": P["GENDER"].map({"M": 8507, "F": 8532}),
                  "year_of_birth": birth.dt.year, "race_concept_id": P["RACE"].map(
                      {"white": 8527, "asian": 8515, "black": 8516}).fillna(0).astype(int)}
                 ).to_csv(folder / "person.csv", index=False)
    classes = {"inpatient": 9201, "emergency": 9203}
    pd.DataFrame({"visit_occurrence_id": V["Id"].map(vid), "person_id": V["PATIENT"].map(pid),
                  "visit_concept_id": V["ENCOUNTERCLASS"].map(classes).fillna(9202).astype(int),
                  "visit_start_date": V["START"].str[:10], "visit_end_date": V["STOP"].str[:10]}
                 ).to_csv(folder / "visit_occurrence.csv", index=False)
    for stem, table, extra in (("condition", "conditions", {}), ("drug", "medications", {}),
                               ("measurement", "observations", {"value_as_number": "VALUE"})):
        E = data.tables[table]
        start = "START" if "START" in E else "DATE"
        frame = {f"{stem}_occurrence_id" if stem == "condition" else f"{stem}_exposure_id" if stem == "drug"
                 else "measurement_id": range(1, len(E) + 1),
                 "person_id": E["PATIENT"].map(pid), f"{stem}_concept_id": E["CODE"],
                 f"{stem}_start_date" if stem != "measurement" else "measurement_date": E[start].str[:10],
                 "visit_occurrence_id": E["ENCOUNTER"].map(vid)}
        for col, src in extra.items():
            frame[col] = pd.to_numeric(E[src], errors="coerce")
        name = {"condition": "condition_occurrence", "drug": "drug_exposure",
                "measurement": "measurement"}[stem]
        pd.DataFrame(frame).to_csv(folder / f"{name}.csv", index=False)


def test_the_omop_cdm_subset_is_a_second_layout(tmp_path):
    omop_subset(tmp_path)
    data = read_folder(tmp_path)
    s = data.schema
    assert s.layout == "omop"
    assert s.patients[0] == "person" and s.patients[1].key == "person_id"
    assert s.patients[1].birth == "year_of_birth" and s.patients[1].times["year_of_birth"] == "year"
    v = s.visits[1]
    assert (s.visits[0], v.key, v.patient, v.klass) == ("visit_occurrence", "visit_occurrence_id",
                                                        "person_id", "visit_concept_id")
    events = dict(s.events)
    assert set(events) == {"condition_occurrence", "drug_exposure", "measurement"}
    assert events["measurement"].value == "value_as_number" and events["measurement"].fhir == "Observation"
    assert events["condition_occurrence"].key == "condition_occurrence_id"
    assert events["condition_occurrence"].key_format == "integer"
    assert events["drug_exposure"].code == "drug_concept_id"
