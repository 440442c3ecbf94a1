"""Column kinds: inferred from a table, shown to the user, overridable with a JSON or YAML file.

Kinds: ``continuous`` (real numbers), ``integer`` (whole numbers with many values), ``categorical``
(strings, or numeric codes with few distinct values), ``boolean`` (two values such as 0/1 or yes/no),
``datetime``, ``identifier`` (unique per row), ``text`` (free text) and ``empty`` (no values at all).
Identifier, text and empty columns are never modelled; ``drop`` in an override removes a column.

The same override file can declare public metadata per column (``min``/``max`` bounds and the list of
``categories``); :class:`medsyn_tabular.transformers.table.TableTransformer` then uses those instead of
statistics of the real rows. ``nullable: false`` (the column never has missing values) and
``dates_only: true`` (a datetime column holds whole days) are public facts the differentially private
path uses instead of measuring them (see :mod:`medsyn_tabular.transformers.private`). File format (JSON or
YAML)::

    columns:
      age:    {kind: integer, min: 0, max: 120}
      sex:    {kind: categorical, categories: [F, M], nullable: false}
      visit:  {kind: datetime, min: 2000-01-01, max: 2030-12-31, dates_only: true}
      notes:  {kind: drop}
    phi:                      # optional per-column PHI action, see medsyn_tabular.data.phi
      BIRTHDATE: year
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("continuous", "integer", "categorical", "boolean", "datetime", "identifier", "text", "empty")
MODELLED_KINDS = ("continuous", "integer", "categorical", "boolean", "datetime")
#: Numeric columns with at most this many distinct whole-number values are treated as codes.
MAX_CODE_VALUES = 10
_BOOL_WORDS = {"true", "false", "yes", "no", "y", "n", "t", "f"}
_ID_NAME = re.compile(r"(^|[_\s])(id|uuid|guid|key|mrn|record|number|no)$|^id[_\s]|identifier", re.I)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATE_LIKE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
                        r"|^\d{1,2}/\d{1,2}/\d{2,4}$")


class SchemaError(ValueError):
    """A schema file or override is invalid; the message names the column and the fix."""

    #: Messages name columns and counts, never a cell value (see medsyn_core.redaction).
    value_free_message = True


@dataclass
class ColumnSchema:
    """What one column is and how it is modelled (``min``/``max``/``categories``: declared metadata)."""

    name: str
    kind: str
    reason: str = ""  # why this kind was inferred (shown to the user)
    n_missing: int = 0
    n_unique: int = 0
    min: float | str | None = None  # declared public bound (from an override file), else None
    max: float | str | None = None
    categories: list[Any] | None = None  # declared public category list, else None
    overridden: bool = False

    @property
    def modelled(self) -> bool:
        return self.kind in MODELLED_KINDS


@dataclass
class TableSchema:
    """The schema of a table: one :class:`ColumnSchema` per column, in table order."""

    columns: list[ColumnSchema] = field(default_factory=list)

    def __getitem__(self, name: str) -> ColumnSchema:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"Column {name!r} is not in the schema. Columns: {', '.join(self.names)}.")

    def __contains__(self, name: str) -> bool:
        return any(c.name == name for c in self.columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def modelled(self) -> list[ColumnSchema]:
        return [c for c in self.columns if c.modelled]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableSchema:
        return cls([ColumnSchema(**c) for c in data["columns"]])

    def to_frame(self) -> pd.DataFrame:
        """One row per column (name, kind, reason, missing, distinct) for display."""
        return pd.DataFrame([{"column": c.name, "kind": c.kind, "missing": c.n_missing,
                              "distinct": c.n_unique, "why": c.reason} for c in self.columns])


def _is_whole(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(np.mod(values, 1) == 0))


def infer_column(name: str, series: pd.Series) -> ColumnSchema:
    """Infer the kind of one column from its name and non-missing values."""
    present = series.dropna()
    n, n_present = len(series), len(present)
    n_unique = int(present.nunique())
    base = {"name": name, "n_missing": int(n - n_present), "n_unique": n_unique}
    if n_present == 0:
        return ColumnSchema(kind="empty", reason="no values", **base)
    if pd.api.types.is_bool_dtype(present):
        return ColumnSchema(kind="boolean", reason="true/false values", **base)
    if pd.api.types.is_datetime64_any_dtype(present):
        return ColumnSchema(kind="datetime", reason="date/time values", **base)
    numeric = pd.to_numeric(present, errors="coerce") if not pd.api.types.is_numeric_dtype(present) \
        else present
    if numeric.notna().all():
        values = numeric.to_numpy(dtype=float)
        whole = _is_whole(values)
        if n_unique == 2 and set(np.unique(values)) <= {0.0, 1.0}:
            return ColumnSchema(kind="boolean", reason="only the values 0 and 1", **base)
        if whole and n_unique == n_present and n_present >= 20 and _ID_NAME.search(name):
            return ColumnSchema(kind="identifier", reason="unique whole number per row, named like an ID",
                                **base)
        if whole and n_unique <= MAX_CODE_VALUES:
            return ColumnSchema(kind="categorical", reason=f"numeric codes with {n_unique} distinct values",
                                **base)
        if whole:
            return ColumnSchema(kind="integer", reason="whole numbers", **base)
        return ColumnSchema(kind="continuous", reason="real numbers", **base)
    text = present.astype(str)
    lowered = set(text.str.lower().unique())
    if n_unique <= 2 and lowered <= _BOOL_WORDS:
        return ColumnSchema(kind="boolean", reason="yes/no or true/false values", **base)
    sample = text.iloc[:200]
    if sample.str.match(_DATE_LIKE).all():
        parsed = to_naive_datetime(text)
        if parsed.notna().all():
            return ColumnSchema(kind="datetime", reason="date/time strings", **base)
    if sample.str.fullmatch(_UUID).all():
        return ColumnSchema(kind="identifier", reason="UUID-shaped values (record keys)", **base)
    mean_words = float(text.str.count(r"\s+").mean()) + 1
    if n_unique > 20 and n_unique > 0.5 * n_present and mean_words >= 4:
        return ColumnSchema(kind="text", reason=f"free text (about {mean_words:.0f} words per value)", **base)
    if n_unique == n_present and n_present >= 20:
        return ColumnSchema(kind="identifier", reason="a different value in every row", **base)
    if n_unique > 0.9 * n_present and n_present >= 50:
        return ColumnSchema(kind="identifier", reason="almost every row has its own value", **base)
    return ColumnSchema(kind="categorical", reason=f"{n_unique} distinct labels", **base)


def infer_schema(df: pd.DataFrame) -> TableSchema:
    """Infer a :class:`TableSchema` for every column of ``df``."""
    if df.shape[1] == 0:
        raise SchemaError("The table has no columns.")
    return TableSchema([infer_column(str(c), df[c]) for c in df.columns])


def to_naive_datetime(s: pd.Series) -> pd.Series:
    """Parse to datetime64 (NaT where not a date); time-zone aware values are converted to UTC."""
    dt = s if pd.api.types.is_datetime64_any_dtype(s) else pd.to_datetime(s, errors="coerce", format="mixed",
                                                                         utc=True)
    if getattr(dt.dt, "tz", None) is not None:
        dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
    return dt


def load_override_file(path: str | Path) -> dict[str, Any]:
    """Read a schema/metadata override file (``.json``, ``.yaml`` or ``.yml``) into a dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such schema file: {path}")
    text = path.read_text(encoding="utf-8-sig")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise SchemaError(f"{path}: cannot parse the schema file ({exc}).") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a mapping with a 'columns' section.")
    return data


def apply_overrides(schema: TableSchema, overrides: dict[str, Any] | None) -> TableSchema:
    """Return a copy of ``schema`` with the ``columns`` section of ``overrides`` applied.

    Each entry may set ``kind`` (one of :data:`KINDS` or ``drop``), ``min``, ``max`` and ``categories``.
    Unknown columns and kinds are errors, so a typo never goes unnoticed.
    """
    out = TableSchema([ColumnSchema(**asdict(c)) for c in schema.columns])
    section = (overrides or {}).get("columns", {}) or {}
    if not isinstance(section, dict):
        raise SchemaError("The 'columns' section of a schema file must map column names to settings.")
    for name, spec in section.items():
        if name not in out:
            raise SchemaError(f"Schema override names column {name!r}, which is not in the table. "
                              f"Columns: {', '.join(out.names)}.")
        if isinstance(spec, str):
            spec = {"kind": spec}
        col = out[name]
        unknown = set(spec) - {"kind", "min", "max", "categories", "nullable", "dates_only"}
        if unknown:
            raise SchemaError(f"Column {name!r}: unknown setting(s) {sorted(unknown)}; "
                              "use kind, min, max, categories, nullable, dates_only.")
        kind = spec.get("kind", col.kind)
        if kind == "drop":
            kind = "empty"
            col.reason = "dropped by the schema file"
        elif kind not in KINDS:
            raise SchemaError(f"Column {name!r}: unknown kind {kind!r}; "
                              f"use one of {', '.join(KINDS)} or drop.")
        else:
            col.reason = "set by the schema file"
        col.kind = kind
        col.min, col.max = spec.get("min", col.min), spec.get("max", col.max)
        if "categories" in spec:
            if not isinstance(spec["categories"], list) or not spec["categories"]:
                raise SchemaError(f"Column {name!r}: 'categories' must be a non-empty list.")
            col.categories = list(spec["categories"])
        col.overridden = True
    return out


def coerce_to_schema(df: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Convert each modelled column to the dtype its kind needs (numbers, datetimes).

    Raises :class:`SchemaError` naming the column and how many cells do not fit (e.g. text in a column
    overridden to ``integer``); never the cells themselves, since the message may be stored and shown
    to others (job errors, audit log).
    """
    out = df.copy()
    for col in schema.modelled:
        s = out[col.name]
        if col.kind in ("continuous", "integer") and not pd.api.types.is_numeric_dtype(s):
            conv = pd.to_numeric(s, errors="coerce")
            bad = s[conv.isna() & s.notna()]
            if len(bad):
                raise SchemaError(f"Column {col.name!r} is declared {col.kind} but {_cells(bad)} a "
                                  "number. Fix the data, add those tokens to the missing values, or declare "
                                  "the column categorical.")
            out[col.name] = conv
        elif col.kind == "datetime" and not pd.api.types.is_datetime64_any_dtype(s):
            conv = to_naive_datetime(s)
            bad = s[conv.isna() & s.notna()]
            if len(bad):
                raise SchemaError(f"Column {col.name!r} is declared datetime but {_cells(bad)} a date. "
                                  "Fix them or declare the column categorical.")
            out[col.name] = conv
    return out


def _cells(bad: pd.Series) -> str:
    """'3 cells (2 distinct values) do not hold' for an error message: counts, never the values."""
    n, distinct = len(bad), int(bad.astype(str).nunique())
    return (f"{n} cell{'s' * (n != 1)} ({distinct} distinct value{'s' * (distinct != 1)}) "
            f"{'do not hold' if n != 1 else 'does not hold'}")


def declaration_yaml(schema: TableSchema, phi_findings=(), key_like: list[str] | None = None) -> str:
    """A schema file (YAML) for the user to review and pass back with ``--schema``: each column's kind
    and why it was inferred, the PHI actions, and a privacy-unit line. It deliberately holds no statistic
    of the rows (no bounds, categories or counts): whatever a user writes into it is treated as public
    under differential privacy, so bounds and categories must come from a data dictionary or clinical
    knowledge, not from this table."""
    lines = [
        "# MedSyn schema file: review every line, then pass it back with --schema FILE.",
        "# Under differential privacy everything declared here is PUBLIC (it costs no privacy budget):",
        "# add min/max or categories only from a data dictionary or clinical knowledge, never copied from",
        "# the table itself. Kinds: " + ", ".join(KINDS) + ", or drop.",
        "#",
        "# Privacy unit: if a patient can have several rows, name the column that identifies the patient",
        "# (one row per patient is then used); if every row is a different patient, keep 'unit: row'.",
    ]
    if key_like:
        lines.append(f"# Column(s) that look like identifiers: {', '.join(key_like)}")
        lines.append(f"# patient_key: {key_like[0]}")
        lines.append("# unit: row")
    else:
        lines.append("unit: row")
    lines.append("columns:")
    for col in schema.columns:
        kind = "drop" if col.kind == "empty" else col.kind
        why = re.sub(r"\d+", "N", col.reason)  # the reason without the counts it was inferred from
        lines.append(f"  {json.dumps(col.name)}: {{kind: {kind}}}  # {why}")
    findings = list(phi_findings)
    if findings:
        lines.append("phi:  # Safe Harbor actions: drop, keep, year, shift, zip3, age90")
        for f in findings:
            lines.append(f"  {json.dumps(f.column)}: {f.action}  # {f.category}: {f.evidence}")
    return "\n".join(lines) + "\n"
