"""PHI detection and HIPAA Safe Harbor transforms; no identifier of Synthea patients reaches the output."""

from __future__ import annotations

import pandas as pd
from tabular_helpers import one_torch_thread

from medsyn_tabular.data.io import read_table
from medsyn_tabular.data.phi import apply_phi, detect_phi, plan_phi
from medsyn_tabular.data.schema import infer_schema
from medsyn_tabular.synthesizer import TabularSynthesizer

DIRECT = {"Id", "SSN", "DRIVERS", "PASSPORT", "PREFIX", "FIRST", "LAST", "SUFFIX", "MAIDEN", "BIRTHPLACE",
          "ADDRESS", "CITY", "COUNTY", "LAT", "LON"}


def test_synthea_patients_identifiers_are_flagged(shared_data):
    df = read_table(shared_data / "tabular/synthea_csv/patients.csv")
    findings = {f.column: f for f in detect_phi(df, infer_schema(df))}
    assert DIRECT <= set(findings)
    assert all(findings[c].action == "drop" for c in DIRECT)
    assert findings["BIRTHDATE"].action == "year" and findings["ZIP"].action == "zip3"
    for harmless in ("RACE", "ETHNICITY", "GENDER", "HEALTHCARE_EXPENSES", "STATE"):
        assert harmless not in findings


def test_detection_by_content_not_only_by_name():
    df = pd.DataFrame({
        "c1": [f"{100 + i}-{10 + i}-{1000 + i}" for i in range(30)],  # SSN-shaped
        "c2": [f"user{i}@example.org" for i in range(30)],
        "c3": [f"(555) 123-{1000 + i}" for i in range(30)],
        "c4": [f"{10 + i} Oak Street" for i in range(30)],
        "c5": list(range(30)),
    })
    flagged = {f.column: f.category for f in detect_phi(df, infer_schema(df))}
    assert flagged == {"c1": "ssn", "c2": "contact", "c3": "contact", "c4": "address"}


def test_safe_harbor_transforms_and_user_override():
    df = pd.DataFrame({"age": [30, 89, 90, 104] * 5, "zip": ["02139", "03601", "10001-1234", None] * 5,
                       "dob": ["1950-03-04", "1961-12-31", "2001-07-01", "1999-01-01"] * 5,
                       "sex": list("FM") * 10})
    schema = infer_schema(df)
    plan = plan_phi(detect_phi(df, schema), {"sex": "keep"}, list(df.columns))
    out, record = apply_phi(df, plan)
    assert out["age"].max() == 90 and int((out["age"] == 90).sum()) == 10
    assert out["zip"].iloc[:4].tolist()[:3] == ["021", "000", "100"] and pd.isna(out["zip"].iloc[3])
    assert out["dob"].iloc[:2].tolist() == [1950, 1961]
    actions = {r["column"]: r["action"] for r in record}
    assert actions == {"age": "age90", "zip": "zip3", "dob": "year", "sex": "keep"}
    assert "90" in next(r["detail"] for r in record if r["column"] == "age")
    text = str(record)
    assert "02139" not in text and "1950-03-04" not in text  # the record holds no real values


def test_synthetic_patients_contain_no_phi(shared_data, tmp_path):
    real = read_table(shared_data / "tabular/synthea_csv/patients.csv")
    with one_torch_thread():
        synth = TabularSynthesizer("tvae", epochs=2, batch_size=20, seed=3).fit(real)
        rows = synth.sample(300)
    assert not DIRECT & set(rows.columns)
    assert set(rows.columns) <= set(real.columns)
    assert rows["BIRTHDATE"].dropna().between(1900, 2030).all()  # years only
    assert rows["ZIP"].dropna().astype(str).str.fullmatch(r"\d{3}").all()
    dump = rows.to_csv(index=False)
    for col in DIRECT | {"BIRTHDATE"}:
        for value in real[col].dropna().astype(str).unique():
            if len(value) >= 6:  # no real name, SSN, address, ID or full birth date anywhere
                assert value not in dump, col
    path = synth.save(tmp_path / "patients-tvae")
    card = TabularSynthesizer.load(path).card
    assert {r["column"] for r in card["phi_handling"] if r["action"] == "drop"} >= DIRECT
