"""Shared helpers of the EHR tests: the bundled Synthea sample, tiny fits, declared schemas for DP."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
import torch
import yaml

from medsyn_tabular.ehr.codecs import code_key
from medsyn_tabular.ehr.dataset import EHRDataset, read_folder

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "ehr" / "synthea_sample"
#: The smallest network and training that still exercise every part (seconds on one thread).
TINY = {"epochs": 4, "batch_size": 4, "dim": 16}


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sample_data() -> EHRDataset:
    return read_folder(SAMPLE)


def declared_schema(data: EHRDataset, folder: Path, birth_years=(1900, 2030),
                    end_date: str = "2023-12-31") -> dict:
    """The inferred schema of ``data`` completed into a DP declaration: every categorical column's
    categories, every code column's vocabulary (a YAML file in ``folder`` with the descriptions and
    by-code columns), birth_years and end_date.

    TEST ONLY: the vocabularies are copied from the rows here, which is acceptable only because the
    Synthea sample is synthetic and its codes are those of Synthea's public modules; a real site declares
    its code lists from the code system or a data dictionary, never from the data (docs/ehr.md)."""
    schema = data.schema.to_dict()
    schema["birth_years"], schema["end_date"] = list(birth_years), end_date
    for name, t in schema["tables"].items():
        if t.get("model") is False or name not in data.tables:
            continue
        df = data.tables[name]

        def values(col, df=df):
            return sorted({code_key(v) for v in df[col].dropna()})

        for col, cs in t["columns"].items():
            if cs["kind"] == "categorical":
                cs["categories"] = values(col)
        cats = {c: values(c) for c in (t.get("class"), t.get("code")) if c}
        if cats:
            t["categories"] = cats
        vocab = {}
        for code_col in dict.fromkeys([t.get("code")] + list((t.get("describe") or {}).values())):
            if not code_col:
                continue
            cols = [d for d, target in (t.get("describe") or {}).items() if target == code_col]
            if code_col == t.get("code"):
                cols += t.get("by_code") or []
            if cols:
                first = df.dropna(subset=[code_col]).drop_duplicates(code_col)
                vocab[code_col] = {code_key(r[code_col]): {c: r[c] for c in cols if pd.notna(r[c])}
                                   for r in first.to_dict("records")}
        if vocab:
            path = Path(folder) / f"{name}.vocabulary.yaml"
            path.write_text(yaml.safe_dump(vocab, allow_unicode=True))
            t["vocabulary"] = str(path)
    return schema
