"""A dataset of related EHR tables: read from a folder (or a zip of one), written back in the same layout.

Reading uses the flat tables' reader (:func:`medsyn_tabular.data.io.read_table`: encodings, delimiters,
missing-value tokens, and its size limits per file); a folder holds at most :data:`MAX_TABLES` tables and
all of them together at most ``MEDSYN_MAX_TABLE_CELLS`` cells. Values are kept as read; time columns are
parsed on demand (:meth:`EHRDataset.times`) in the formats the schema names, so a synthetic dataset written
by :func:`write_folder` has the same files, columns and date formats as the input (Synthea in, Synthea out)
and reads back with ``medsyn ehr schema``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medsyn_core.limits import MAX_TABLE_CELLS
from medsyn_tabular.data.io import read_table
from medsyn_tabular.data.schema import SchemaError
from medsyn_tabular.ehr.schema import EHRSchema, infer_schema, load_schema

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
MAX_TABLES = 64


@dataclass
class EHRDataset:
    """Tables by name (file stem, values as read) and their schema."""

    tables: dict[str, pd.DataFrame]
    schema: EHRSchema
    source: str = "tables"
    files: dict[str, str] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            raise SchemaError(f"The dataset has no table {name!r} (tables: {', '.join(self.tables)}).")
        return self.tables[name]

    def times(self, name: str, column: str) -> pd.Series:
        """A time column parsed to naive UTC datetime64 (NaT where missing); 'year' columns become 1 July
        of the year."""
        fmt = self.schema.tables[name].times.get(column, "datetime")
        return parse_times(self.table(name)[column], fmt)

    @property
    def n_patients(self) -> int:
        return len(self.tables[self.schema.patients[0]])

    def subset(self, patient_keys) -> EHRDataset:
        """The dataset restricted to the patients whose key is in ``patient_keys`` (all their rows)."""
        keep = {str(k) for k in patient_keys}
        out = {}
        for name, df in self.tables.items():
            spec = self.schema.tables.get(name)
            if spec is None or not spec.model:
                continue
            col = spec.key if spec.role == "patients" else spec.patient
            out[name] = df[df[col].astype(str).isin(keep)].reset_index(drop=True)
        return EHRDataset(out, self.schema, self.source, dict(self.files))


def parse_times(values: pd.Series, fmt: str) -> pd.Series:
    """Parse a time column written in ``fmt`` (see :data:`~medsyn_tabular.ehr.schema.TIME_FORMATS`)."""
    if fmt == "year":
        years = pd.to_numeric(values, errors="coerce")
        text = years.map(lambda y: f"{int(y):04d}-07-01" if pd.notna(y) else None)
        return pd.to_datetime(text, errors="coerce")
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values
    else:
        out = pd.to_datetime(values.astype("string"), errors="coerce", utc=True, format="mixed")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out.astype("datetime64[ns]")


def format_times(values: pd.Series, fmt: str) -> pd.Series:
    """Write datetimes back in ``fmt`` (text, missing stays missing; 'year' gives whole years)."""
    dt = pd.to_datetime(values)
    if fmt == "year":
        return dt.dt.year.astype("Int64")
    pattern = {"date": "%Y-%m-%d", "datetime-z": "%Y-%m-%dT%H:%M:%SZ", "datetime": "%Y-%m-%d %H:%M:%S"}[fmt]
    return dt.dt.strftime(pattern).astype(object).where(dt.notna(), np.nan)


def _table_files(folder: Path) -> list[Path]:
    """The table files of ``folder`` or, when it has none, of its only sub-folder holding some (a zip of a
    folder unpacks to one)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES
                   and not p.name.startswith("."))
    if files:
        return files
    subs = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "__MACOSX"))]
    found = [d for d in subs if any(p.suffix.lower() in TABLE_SUFFIXES for p in d.iterdir())]
    if len(found) == 1:
        return _table_files(found[0])
    return []


def read_tables(folder: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Every table of a folder: (file stem -> DataFrame, file stem -> file name). Raises
    :class:`SchemaError` for a folder without tables or with two files of one stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No such folder: {folder}")
    files = _table_files(folder)
    if not files:
        raise SchemaError(f"{folder.name}: no CSV/TSV or Parquet tables found; give the folder of an EHR "
                          "export (e.g. Synthea's csv/ folder).")
    if len(files) > MAX_TABLES:
        raise SchemaError(f"{folder.name}: {len(files)} tables; at most {MAX_TABLES} are read. Keep the "
                          "tables "
                          "of the export you need.")
    tables, names, cells = {}, {}, 0
    for path in files:
        stem = path.stem
        if stem in tables:
            raise SchemaError(f"{folder.name}: two files are named {stem!r}; keep one.")
        tables[stem] = read_table(path)
        names[stem] = path.name
        cells += tables[stem].size
        MAX_TABLE_CELLS.check(cells, f"{folder.name} (all tables together, rows x columns)",
                              "Use a sample of the patients.")
    return tables, names


def read_folder(folder: str | Path, schema=None) -> EHRDataset:
    """Read an EHR folder with a declared ``schema`` (file, dict or :class:`EHRSchema`), or with the
    inferred one (:func:`~medsyn_tabular.ehr.schema.infer_schema`)."""
    tables, files = read_tables(folder)
    spec = infer_schema(tables, files) if schema is None else check_tables(tables, load_schema(schema))
    return EHRDataset(tables, spec, Path(folder).name, files)


def check_tables(tables: dict[str, pd.DataFrame], schema: EHRSchema) -> EHRSchema:
    """``schema`` if every modelled table and column it names is in ``tables``, and no modelled column is
    named like a direct identifier (a name, SSN, address, record number ...) without an explicit
    ``phi: {COLUMN: keep}``; else a SchemaError. Only the column names are looked at."""
    from medsyn_tabular.data.phi import detect_phi

    missing = [n for n, t in schema.tables.items() if t.model and n not in tables]
    if missing:
        raise SchemaError(f"The schema names table(s) {missing} that the folder does not hold "
                          f"(tables: {', '.join(tables)}).")
    for name, t in schema.tables.items():
        if not t.model:
            continue
        needed = set(t.role_columns) | set(t.columns) | set(t.describe) | set(t.by_code)
        absent = sorted(needed - set(tables[name].columns))
        if absent:
            raise SchemaError(f"Table {name!r} has no column(s) {absent} named in the schema.")
        modelled = [c for c in list(t.columns) + list(t.describe) + list(t.by_code) if t.phi.get(c) != "keep"]
        flagged = [f.column for f in detect_phi(tables[name][modelled], content=False) if f.action == "drop"]
        if flagged:
            raise SchemaError(f"Table {name!r}: column(s) {flagged} are named like direct identifiers (PHI) "
                              "but the schema models them. Remove them from the schema, or declare "
                              "'phi: {COLUMN: keep}' if they identify no one.")
    return schema


def read_zip(path: str | Path, schema=None, label: str | None = None) -> EHRDataset:
    """Read the EHR folder inside a zip (unpacked under the archive limits into a private temp folder,
    removed afterwards)."""
    from medsyn_core.archives import extract_zip
    from medsyn_core.settings import private_temp_dir

    with private_temp_dir("medsyn-ehr-") as tmp:
        extract_zip(path, tmp, label=label or Path(path).name)
        data = read_folder(tmp, schema)
    data.source = label or Path(path).stem
    return data


def read_source(path: str | Path, schema=None) -> EHRDataset:
    """A folder, or a zip file of one."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return read_zip(path, schema)
    return read_folder(path, schema)


def _table_bytes(df: pd.DataFrame, file: str, raw: bool) -> bytes:
    if file.lower().endswith((".parquet", ".pq")):
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    from medsyn_core.csv_export import to_csv_bytes

    return to_csv_bytes(df, raw=raw)


def write_folder(data: EHRDataset, folder: str | Path, raw: bool = False, overwrite: bool = False) -> Path:
    """Write every table under its input file name into ``folder`` (created atomically; CSV cells are
    spreadsheet-safe unless ``raw``, see :mod:`medsyn_core.csv_export`)."""
    from medsyn_core.files import atomic_directory, atomic_write_bytes

    folder = Path(folder)
    with atomic_directory(folder, overwrite=overwrite) as tmp:
        for name, df in data.tables.items():
            file = data.files.get(name) or f"{name}.csv"
            atomic_write_bytes(tmp / file, _table_bytes(df, file, raw))
    return folder


def zip_bytes(data: EHRDataset, raw: bool = False, extra: dict[str, bytes] | None = None) -> bytes:
    """The tables (and ``extra`` files, name -> bytes) as one zip, for a download."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, df in data.tables.items():
            file = data.files.get(name) or f"{name}.csv"
            zf.writestr(file, _table_bytes(df, file, raw))
        for name, blob in (extra or {}).items():
            zf.writestr(name, blob)
    return buf.getvalue()
