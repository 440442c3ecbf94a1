"""Reading tables (encodings, BOM, delimiters, missing tokens) and schema inference/overrides."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from conftest import needs_shared_data

from medsyn_tabular.data.io import TableReadError, read_table
from medsyn_tabular.data.schema import (
    KINDS,
    SchemaError,
    apply_overrides,
    coerce_to_schema,
    infer_schema,
    load_override_file,
)


def _tables(shared):
    folder = shared / "tabular"
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".csv", ".data")) + \
        sorted((folder / "synthea_csv").glob("*.csv"))


@needs_shared_data
def test_every_shared_table_reads_and_gets_a_schema(shared_data):
    tables = _tables(shared_data)
    assert len(tables) >= 24
    for path in tables:
        df = read_table(path)
        assert len(df) > 0 and df.shape[1] > 1, path.name
        schema = infer_schema(df)
        assert schema.names == list(df.columns)
        assert all(c.kind in KINDS for c in schema.columns)
        for col in schema.columns:  # identifier and free-text columns are never categories
            if col.kind == "categorical":
                assert col.n_unique < len(df) or len(df) < 20, (path.name, col.name)


@needs_shared_data
def test_known_missing_counts_bom_and_headerless_files(shared_data):
    stroke = read_table(shared_data / "tabular/healthcare-dataset-stroke-data.csv")
    assert stroke.columns[0] == "id"  # BOM removed from the first header
    assert int(stroke["bmi"].isna().sum()) == 201  # 'N/A'
    assert pd.api.types.is_numeric_dtype(stroke["bmi"])
    cleveland = read_table(shared_data / "tabular/processed.cleveland.data")  # no header, '?' missing
    assert cleveland.shape == (303, 14) and int(cleveland.isna().sum().sum()) == 6
    wdbc = read_table(shared_data / "tabular/breast_cancer_wisconsin_data.csv")  # CRLF + empty trailing col
    assert wdbc.shape == (569, 32)
    schema = infer_schema(stroke)
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["id"] == "identifier" and kinds["bmi"] == "continuous"
    assert kinds["gender"] == "categorical" and kinds["stroke"] == "boolean"
    heart = infer_schema(read_table(shared_data / "tabular/heart.csv"))
    assert heart["cp"].kind == "categorical" and "numeric codes" in heart["cp"].reason
    assert heart["chol"].kind == "integer" and heart["oldpeak"].kind == "continuous"


@pytest.mark.parametrize("encoding,delimiter", [("utf-8-sig", ";"), ("cp1252", "\t"), ("utf-16", ","),
                                                ("utf-8", "|")])
def test_encodings_delimiters_and_missing_tokens(encoding, delimiter):
    rows = ["name;age;city;when;note".replace(";", delimiter)]
    tokens = ["", "NA", "N/A", "?", "null", "None", " - "]
    for i in range(30):
        age = tokens[i % len(tokens)] if i % 4 == 0 else str(20 + i)
        rows.append(delimiter.join([f"Zoë{i}", age, "Köln" if i % 2 else "Paris", f"2020-01-{i % 28 + 1:02d}",
                                    "x"]))
    raw = ("\r\n".join(rows) + "\r\n").encode(encoding)
    df = read_table(raw, name="t.csv")
    assert list(df.columns) == ["name", "age", "city", "when", "note"]
    assert df["city"].iloc[1] == "Köln" and df["name"].iloc[3] == "Zoë3"
    assert int(df["age"].isna().sum()) == 8 and pd.api.types.is_numeric_dtype(df["age"])
    kinds = {c.name: c.kind for c in infer_schema(df).columns}
    assert kinds == {"name": "identifier", "age": "integer", "city": "categorical", "when": "datetime",
                     "note": "categorical"}


def test_parquet_and_file_objects(tmp_path):
    df = pd.DataFrame({"a": np.arange(12.0), "b": list("xyz") * 4})
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    pd.testing.assert_frame_equal(read_table(path), df, check_dtype=False)
    from_upload = read_table(io.BytesIO(path.read_bytes()), name="upload.parquet")
    pd.testing.assert_frame_equal(from_upload, df, check_dtype=False)


def test_bad_files_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TableReadError, match="empty"):
        read_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b,c\n")
    with pytest.raises(TableReadError, match="no data rows"):
        read_table(header_only)
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "missing.csv")


def test_yaml_and_json_overrides(tmp_path):
    df = pd.DataFrame({"code": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] * 3, "age": list(range(36)),
                       "label": ["a", "b", "c"] * 12})
    schema = infer_schema(df)
    assert schema["code"].kind == "integer"
    yml = tmp_path / "s.yaml"
    yml.write_text("columns:\n  code: {kind: categorical}\n  age: {min: 0, max: 120}\n  label: drop\n")
    over = apply_overrides(schema, load_override_file(yml))
    assert over["code"].kind == "categorical" and over["age"].max == 120 and over["label"].kind == "empty"
    js = tmp_path / "s.json"
    js.write_text('{"columns": {"nope": {"kind": "integer"}}}')
    with pytest.raises(SchemaError, match="nope"):
        apply_overrides(schema, load_override_file(js))
    with pytest.raises(SchemaError, match="unknown kind"):
        apply_overrides(schema, {"columns": {"age": {"kind": "numberish"}}})


def test_non_numeric_value_in_numeric_override_is_a_clear_error():
    df = pd.DataFrame({"x": ["1", "2", "abc", "4"] * 5, "y": list("ab") * 10})
    schema = apply_overrides(infer_schema(df), {"columns": {"x": {"kind": "integer"}}})
    with pytest.raises(SchemaError, match=r"'x' is declared integer but 5 cells \(1 distinct value\) do not "
                       "hold a number") as err:
        coerce_to_schema(df, schema)
    assert "abc" not in str(err.value)  # the message may be stored and shown to others: no cell values
