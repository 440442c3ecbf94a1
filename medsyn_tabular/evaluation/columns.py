"""Column kinds and input checks for the evaluation engine.

Every column is one of three kinds: ``numeric`` (continuous numbers), ``datetime`` or ``categorical``
(labels, booleans and low-cardinality integer codes such as ``sex`` = 0/1 or ``cp`` = 1..4). The kinds
decide which metric applies (KS vs TV complement, correlation vs contingency, etc.), exactly as SDMetrics
uses ``numerical``/``datetime``/``categorical`` sdtypes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NUMERIC, DATETIME, CATEGORICAL = "numeric", "datetime", "categorical"
KINDS = (NUMERIC, DATETIME, CATEGORICAL)

#: Integer-valued columns with at most this many distinct values are treated as category codes.
MAX_CODES = 10
#: Tokens read as missing in CSV files (besides pandas' defaults).
MISSING_TOKENS = ["", "NA", "N/A", "?", "null"]
#: Smallest holdout that supports the holdout-based comparisons (DCR, membership inference, TSTR test).
MIN_HOLDOUT_ROWS = 10
#: Smallest real training table.
MIN_TRAIN_ROWS = 20


def read_table_csv(path: str | Path) -> pd.DataFrame:
    """Read a table for evaluation with the tabular engine's reader (encodings, BOM, delimiters,
    MedSyn's missing-value tokens, trailing empty columns removed)."""
    from medsyn_tabular.data.io import read_table

    return read_table(path)


def _looks_like_dates(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(200)
    if sample.empty or not sample.str.contains(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}").mean() > 0.9:
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() > 0.9)


def infer_column_kind(values: pd.Series, max_codes: int = MAX_CODES) -> str:
    """The kind of one column: ``numeric``, ``datetime`` or ``categorical``."""
    if pd.api.types.is_bool_dtype(values):
        return CATEGORICAL
    if pd.api.types.is_datetime64_any_dtype(values):
        return DATETIME
    if pd.api.types.is_numeric_dtype(values):
        present = values.dropna().to_numpy(dtype=float)
        if present.size and np.all(np.mod(present, 1) == 0) and np.unique(present).size <= max_codes:
            return CATEGORICAL
        return NUMERIC
    if _looks_like_dates(values):
        return DATETIME
    return CATEGORICAL


def infer_column_kinds(df: pd.DataFrame, overrides: dict[str, str] | None = None,
                       max_codes: int = MAX_CODES) -> dict[str, str]:
    """Kinds of all columns of ``df``; ``overrides`` (column -> kind) wins over the inference."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(df.columns))
    if unknown:
        raise ValueError(f"Column types were given for columns that are not in the table: {unknown}.")
    bad = {c: k for c, k in overrides.items() if k not in KINDS}
    if bad:
        raise ValueError(f"Unknown column types {bad}; use one of {', '.join(KINDS)}.")
    return {c: overrides.get(c) or infer_column_kind(df[c], max_codes) for c in df.columns}


@dataclass
class PreparedTables:
    """Real training rows, real holdout rows (or None) and synthetic rows with aligned dtypes."""

    train: pd.DataFrame
    holdout: pd.DataFrame | None
    synthetic: pd.DataFrame
    kinds: dict[str, str]
    target: str

    @property
    def columns(self) -> list[str]:
        return list(self.kinds)

    def of_kind(self, *kinds: str) -> list[str]:
        return [c for c, k in self.kinds.items() if k in kinds]


def _check_columns(real: pd.DataFrame, other: pd.DataFrame, name: str) -> None:
    missing = [c for c in real.columns if c not in other.columns]
    extra = [c for c in other.columns if c not in real.columns]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"extra {extra}")
        raise ValueError(f"The {name} table's columns do not match the real table: {'; '.join(parts)}. "
                         "Both tables must have the same column names.")


def _as_kind(values: pd.Series, kind: str, column: str, table: str) -> pd.Series:
    if kind == NUMERIC:
        if pd.api.types.is_bool_dtype(values):
            return values.astype(float)
        converted = pd.to_numeric(values, errors="coerce")
        bad = converted.isna() & values.notna()
        if bad.any():
            example = values[bad].iloc[0]
            raise ValueError(f"Column {column!r} of the {table} table should hold numbers but contains "
                             f"{example!r} ({int(bad.sum())} such cells). Fix the file or declare the "
                             "column categorical.")
        return converted.astype(float)
    if kind == DATETIME:
        if pd.api.types.is_datetime64_any_dtype(values):
            return values
        converted = pd.to_datetime(values, errors="coerce", format="mixed")
        bad = converted.isna() & values.notna()
        if bad.any():
            raise ValueError(f"Column {column!r} of the {table} table should hold dates but contains "
                             f"{values[bad].iloc[0]!r} ({int(bad.sum())} such cells).")
        return converted
    return values


def _align_categories(frames: list[pd.DataFrame], column: str) -> None:
    """Give a categorical column the same Python types in every table (numbers vs strings)."""
    numeric = [pd.api.types.is_numeric_dtype(f[column]) or pd.api.types.is_bool_dtype(f[column])
               for f in frames]
    if all(numeric):
        for f in frames:
            if pd.api.types.is_bool_dtype(f[column]):
                f[column] = f[column].astype(float)
        return
    for f in frames:
        col = f[column]
        if pd.api.types.is_float_dtype(col) and np.all(np.mod(col.dropna(), 1) == 0):
            col = col.astype("Int64")
        f[column] = col.astype(object).where(col.notna(), np.nan).map(
            lambda v: v if isinstance(v, float) and np.isnan(v) else str(v))


def prepare_tables(real: pd.DataFrame, synthetic: pd.DataFrame, *, target: str,
                   holdout: pd.DataFrame | None = None,
                   column_types: dict[str, str] | None = None) -> PreparedTables:
    """Check the inputs and return copies with one dtype per column across the tables.

    Raises ``ValueError`` with a plain message for mismatched columns, a missing or constant target,
    too few rows, and categorical columns whose synthetic values never occur in the real data.
    """
    for name, df in (("real", real), ("synthetic", synthetic), ("holdout", holdout)):
        if df is not None and not isinstance(df, pd.DataFrame):
            raise ValueError(f"The {name} table must be a pandas DataFrame, got {type(df).__name__}.")
    if real.shape[1] == 0:
        raise ValueError("The real table has no columns.")
    _check_columns(real, synthetic, "synthetic")
    if holdout is not None:
        _check_columns(real, holdout, "holdout")
    if target not in real.columns:
        raise ValueError(f"Target column {target!r} is not in the table; choose one of "
                         f"{list(map(str, real.columns))}.")
    if len(real) < MIN_TRAIN_ROWS:
        raise ValueError(f"The real table has {len(real)} rows; at least {MIN_TRAIN_ROWS} are needed.")
    if len(synthetic) < 2:
        raise ValueError(f"The synthetic table has {len(synthetic)} rows; at least 2 are needed.")
    if holdout is not None and len(holdout) < MIN_HOLDOUT_ROWS:
        raise ValueError(f"The holdout has {len(holdout)} rows; at least {MIN_HOLDOUT_ROWS} real rows the "
                         "generator never saw are needed to compare against.")
    real_target = real[target].dropna()
    if real_target.nunique() < 2:
        raise ValueError(f"Target column {target!r} is constant or empty in the real data "
                         f"({real_target.nunique()} distinct values); choose a column that varies.")

    kinds = infer_column_kinds(real, column_types)
    frames = [real.copy(), synthetic[real.columns].copy()]
    names = ["real", "synthetic"]
    if holdout is not None:
        frames.append(holdout[real.columns].copy())
        names.append("holdout")
    for column, kind in kinds.items():
        for f, name in zip(frames, names, strict=True):
            f[column] = _as_kind(f[column], kind, column, name)
        if kind == CATEGORICAL:
            _align_categories(frames, column)
            real_values = set(frames[0][column].dropna().unique())
            syn_values = set(frames[1][column].dropna().unique())
            if real_values and syn_values and not real_values & syn_values:
                raise ValueError(
                    f"Column {column!r}: none of the synthetic categories {sorted(map(str, syn_values))[:5]} "
                    f"occur in the real data {sorted(map(str, real_values))[:5]}. Check that both files code "
                    "this column the same way.")
    frames = [f.reset_index(drop=True) for f in frames]
    return PreparedTables(train=frames[0], holdout=frames[2] if holdout is not None else None,
                          synthetic=frames[1], kinds=kinds, target=target)


def sdmetrics_metadata(kinds: dict[str, str]) -> dict:
    """The equivalent SDMetrics single-table metadata (used by the tests that compare with SDMetrics)."""
    sdtype = {NUMERIC: "numerical", DATETIME: "datetime", CATEGORICAL: "categorical"}
    return {"columns": {c: {"sdtype": sdtype[k]} for c, k in kinds.items()}}
