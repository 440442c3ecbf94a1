"""Messy real tables (issue 19): numbers with units, decimal commas, 'unknown' cells, per-column missing
tokens, Excel uploads, and the data profile shown before training."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from medsyn_tabular.data.cleaning import apply_fixes, apply_missing_tokens, detect_issues, parse_number
from medsyn_tabular.data.io import TableReadError, read_table
from medsyn_tabular.data.profile import profile_table
from medsyn_tabular.data.schema import SchemaError, apply_overrides, coerce_to_schema, infer_schema


def messy_csv(n: int = 120) -> bytes:
    """A table as clinics export it: weight with a unit, a lab value with decimal commas, 'unknown'."""
    rng = np.random.default_rng(0)
    weight = [f"{w} kg" if i % 17 else "unknown" for i, w in enumerate(rng.integers(50, 110, n))]
    crp = [f"{v:.1f}".replace(".", ",") for v in rng.uniform(0.1, 9.9, n)]
    age = rng.integers(20, 90, n)
    outcome = rng.integers(0, 2, n)
    frame = pd.DataFrame({"age": age, "weight": weight, "crp": crp, "outcome": outcome})
    return frame.to_csv(sep=";", index=False).encode()


def test_units_and_decimal_commas_are_no_longer_hundreds_of_labels_once_fixed():
    df = read_table(messy_csv(), name="messy.csv")
    before = infer_schema(df)
    assert before["weight"].kind == "categorical" and before["weight"].n_unique > 40  # the old defect
    assert before["crp"].kind in ("categorical", "identifier")
    issues = {i.column: i for i in detect_issues(df)}
    assert set(issues) == {"weight", "crp"}
    assert issues["weight"].units == ["kg"] and issues["weight"].other_tokens == ["unknown"]
    assert issues["weight"].suggested == "parse" and issues["crp"].kinds == ["decimal_comma"]
    fixed, records = apply_fixes(df, {"weight": "parse", "crp": "parse"})
    after = infer_schema(fixed)
    assert after["weight"].kind == "integer" and after["crp"].kind == "continuous"
    assert fixed["weight"].isna().sum() == sum(1 for i in range(120) if i % 17 == 0)
    assert df["weight"].iloc[1].endswith("kg")  # the original frame is untouched
    text = json.dumps([r.to_dict() for r in records])
    assert "kg" not in text and "unknown" not in text and "," not in fixed["crp"].astype(str).str.cat()


def test_a_declared_continuous_column_with_decimal_commas_is_caught_before_training_and_fixable():
    df = read_table(messy_csv(), name="messy.csv")
    declared = apply_overrides(infer_schema(df), {"columns": {"crp": "continuous"}})
    with pytest.raises(SchemaError, match="declared continuous") as refused:
        coerce_to_schema(df, declared)
    assert "1," not in str(refused.value)  # counts, never the cells
    fixed, _ = apply_fixes(df, {"crp": "parse"})
    assert coerce_to_schema(fixed, declared)["crp"].dtype.kind == "f"


def test_keep_as_categorical_and_missing_only_fixes():
    df = pd.DataFrame({"x": ["1", "2", "n.d.", "3"] * 5})
    (issue,) = detect_issues(df)
    assert issue.fixes == ["missing", "categorical"]
    kept, _ = apply_fixes(df, {"x": "categorical"})
    assert kept["x"].tolist() == df["x"].tolist()
    gone, (record,) = apply_fixes(df, {"x": "missing"})
    assert gone["x"].isna().sum() == 5 and record.cells_made_missing == 5
    with pytest.raises(ValueError, match="Unknown fix"):
        apply_fixes(df, {"x": "guess"})


def test_two_units_in_one_column_are_only_kept_as_labels():
    (issue,) = detect_issues(pd.DataFrame({"w": ["80 kg", "176 lb", "70 kg", "65 kg"]}))
    assert issue.fixes == ["categorical"] and issue.units == ["kg", "lb"]


@pytest.mark.parametrize("text,value", [("80 kg", 80.0), ("5,1", 5.1), ("1.234,5", 1234.5),
                                        ("1,234.5", 1234.5), ("37,5 °C", 37.5), ("unknown", None),
                                        ("<5", None), ("-3", -3.0)])
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_per_column_missing_tokens_make_a_column_numeric():
    df = pd.DataFrame({"glucose": [0, 120, 0, 99] * 5, "bp": ["70", "not done", "80", "-"] * 5})
    out, records = apply_missing_tokens(df, {"glucose": ["0"], "bp": ["not done", " - "]})
    assert out["glucose"].isna().sum() == 10 and df["glucose"].isna().sum() == 0
    assert pd.api.types.is_numeric_dtype(out["bp"]) and out["bp"].isna().sum() == 10
    assert {r.column: r.cells_made_missing for r in records} == {"glucose": 10, "bp": 10}


def test_excel_upload_reads_like_the_csv():
    df = read_table(messy_csv(), name="messy.csv")
    buf = io.BytesIO()
    df.to_excel(buf, index=False)
    from_excel = read_table(buf.getvalue(), name="messy.xlsx")
    assert list(from_excel.columns) == list(df.columns) and len(from_excel) == len(df)
    assert from_excel["weight"].tolist() == df["weight"].tolist()
    assert {i.column for i in detect_issues(from_excel)} == {"weight", "crp"}
    with pytest.raises(TableReadError, match="not a readable Excel"):
        read_table(b"a;b\n1;2\n", name="fake.xlsx")
    with pytest.raises(TableReadError, match=".xls"):
        read_table(b"\xd0\xcf\x11\xe0 old binary", name="old.xls")


def test_profile_lists_kinds_missing_ranges_and_warnings():
    df = read_table(messy_csv(), name="messy.csv")
    df["constant"] = 1
    profile = profile_table(df)
    rows = {r["column"]: r for r in profile.rows}
    assert rows["age"]["kind"] == "integer" and " to " in rows["age"]["range or top categories"]
    assert rows["weight"]["warnings"].startswith("messy numbers")
    assert any("'constant'" in w and "one value only" in w for w in profile.warnings)
