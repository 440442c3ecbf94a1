"""The data profile shown before training: per column its kind, missing values, range or top categories,
and plain warnings (constant columns, mostly missing columns, identifier-like columns, messy numbers).

For the screen of the user who uploaded the table (it quotes the column's own values: ranges and frequent
categories); nothing here is stored or sent anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from medsyn_tabular.data.cleaning import detect_issues
from medsyn_tabular.data.schema import TableSchema, infer_schema

#: A column missing in more than this share of rows gets a warning.
MOSTLY_MISSING = 0.5
TOP_CATEGORIES = 3


@dataclass
class TableProfile:
    """``rows``: one dict per column for a table view; ``warnings``: plain sentences (column names and
    counts only)."""

    n_rows: int
    n_columns: int
    rows: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _fmt(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)


def profile_table(df: pd.DataFrame, schema: TableSchema | None = None) -> TableProfile:
    """Profile ``df`` (``schema``: its inferred schema, computed when not given)."""
    schema = schema or infer_schema(df)
    issues = {i.column: i for i in detect_issues(df)}
    profile = TableProfile(len(df), df.shape[1])
    for col in schema.columns:
        s = df[col.name]
        missing = int(s.isna().sum())
        row = {"column": col.name, "kind": col.kind, "missing": missing,
               "missing %": round(100.0 * missing / max(1, len(df)), 1), "distinct": col.n_unique,
               "range or top categories": ""}
        present = s.dropna()
        if col.kind in ("continuous", "integer") and pd.api.types.is_numeric_dtype(present) and len(present):
            row["range or top categories"] = (f"{_fmt(present.min())} to {_fmt(present.max())} "
                                              f"(median {_fmt(float(present.median()))})")
        elif col.kind == "datetime" and len(present):
            row["range or top categories"] = f"{present.astype(str).min()} to {present.astype(str).max()}"
        elif len(present):
            top = present.value_counts().head(TOP_CATEGORIES)
            row["range or top categories"] = ", ".join(f"{_fmt(k)} ({v})" for k, v in top.items())
        notes = []
        if col.name in issues:
            notes.append("messy numbers: " + issues[col.name].describe())
        if len(df) and missing / len(df) > MOSTLY_MISSING:
            notes.append(f"{row['missing %']}% missing")
        if col.n_unique == 1:
            notes.append("one value only: nothing to learn")
        if col.kind == "identifier":
            notes.append("identifier: not modelled")
        if col.kind == "text":
            notes.append("free text: not modelled")
        row["warnings"] = "; ".join(notes)
        profile.rows.append(row)
        profile.warnings += [f"{col.name!r}: {n}." for n in notes]
    if len(df) < 100:
        profile.warnings.append(f"Only {len(df)} rows: synthetic data from so few patients is weak, and a "
                                "20 % holdout leaves even fewer for training.")
    return profile
