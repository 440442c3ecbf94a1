"""Reading clinical tables: CSV in any common encoding (with or without a byte-order mark), with ``,``
``;``, tab or ``|`` delimiters, Parquet, and Excel workbooks (``.xlsx``/``.xlsm``, the first sheet, read
with openpyxl); missing-value tokens become real missing values (NaN).

Nothing is typed here beyond what pandas infers; :mod:`medsyn_tabular.data.schema` decides what each column
is.

Hostile files: the file size, the number of columns (from the header line) and the number of cells
(lines x columns; for Parquet from its metadata; for Excel the unpacked size and the sheet's rows x
columns as the rows are read) are checked against
:data:`medsyn_core.limits.MAX_TABLE_BYTES`, ``MAX_TABLE_COLUMNS`` and ``MAX_TABLE_CELLS`` before pandas
parses anything, and every parser failure becomes a :class:`TableReadError`.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from medsyn_core.limits import (
    MAX_TABLE_BYTES,
    MAX_TABLE_CELLS,
    MAX_TABLE_COLUMNS,
    InputLimitError,
    reading_input,
)

#: Cell values read as "missing" (compared after stripping surrounding spaces, case-sensitive as listed).
MISSING_TOKENS: tuple[str, ...] = (
    "", "NA", "N/A", "n/a", "na", "NaN", "nan", "NAN", "?", "null", "NULL", "Null", "None", "none",
    "NONE", "-", "--", ".", "#N/A", "missing", "MISSING", "unknown_value",
)
_ENCODINGS = ("utf-8-sig", "utf-16", "cp1252", "latin-1")
_DELIMITERS = ",;\t|"
#: Characters of the file's start used to guess the delimiter and read the header line.
_SNIFF_CHARS = 64 * 1024


class TableReadError(ValueError):
    """The file cannot be read as a table; the message says why and what to do."""


def _decode(raw: bytes, source: str) -> tuple[str, str]:
    """Decode bytes with the first encoding that works; returns (text, encoding)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
    for enc in _ENCODINGS:
        if enc == "utf-16":
            continue
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise TableReadError(f"{source}: cannot decode the file as UTF-8, cp1252 or latin-1 text.")


def _sniff_delimiter(text: str) -> str:
    """Pick the delimiter from the first lines (csv.Sniffer, falling back to the most frequent one); only
    the first 50 lines within the first 64 KiB are looked at."""
    sample = "\n".join(text[:_SNIFF_CHARS].splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        first = sample.splitlines()[0] if sample else ""
        counts = {d: first.count(d) for d in _DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _looks_like_value(cell: str) -> bool:
    """True for a number or a missing token: a first line made only of these is data, not a header."""
    cell = cell.strip()
    if cell in MISSING_TOKENS:
        return True
    try:
        float(cell)
        return True
    except ValueError:
        return False


def read_table(source: str | os.PathLike | bytes | io.IOBase, name: str | None = None) -> pd.DataFrame:
    """Read a CSV/TSV, Parquet or Excel (``.xlsx``, first sheet) table into a DataFrame with missing tokens
    as NaN.

    ``source`` is a path, raw bytes or a binary file object (e.g. a Streamlit upload); ``name`` (file
    name) helps pick Parquet for bytes. Whitespace around cells is stripped. A trailing column with no
    header and no values (left by a trailing delimiter) is removed. Raises :class:`TableReadError` for an
    empty or unreadable file. A file whose first line is mostly numbers has no header: its columns are
    named ``col_0``, ``col_1``, ...
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"No such file: {path}")
        label = str(path)
        MAX_TABLE_BYTES.check(path.stat().st_size, label, "Use a sample of the rows.")
        raw = path.read_bytes()
        name = name or path.name
    elif isinstance(source, bytes):
        label, raw = name or "uploaded data", source
    else:
        label = name or getattr(source, "name", "uploaded data")
        raw = source.read(MAX_TABLE_BYTES.value() + 1)
    MAX_TABLE_BYTES.check(len(raw), label, "Use a sample of the rows.")
    with reading_input(label):
        return _parse_table(raw, label, name)


def _check_shape(label: str, columns: int, cells: int) -> None:
    MAX_TABLE_COLUMNS.check(columns, label, "Keep the columns you need and drop the rest before uploading.")
    MAX_TABLE_CELLS.check(cells, f"{label} (rows x columns)", "Use a sample of the rows.")


EXCEL_SUFFIXES = (".xlsx", ".xlsm")


def _read_excel(raw: bytes, label: str) -> pd.DataFrame:
    """The first sheet of an Excel workbook: its first row is the header when it is mostly text."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        raise TableReadError(f"{label}: not a readable Excel workbook (.xlsx); save it again from Excel, "
                             "or export the sheet as CSV.") from None
    MAX_TABLE_BYTES.check(sum(m.file_size for m in members), f"{label} (unpacked)",
                          "Use a sample of the rows.")
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged files
        raise TableReadError(f"{label}: not a readable Excel workbook ({type(exc).__name__}); save it again "
                             "from Excel, or export the sheet as CSV.") from None
    try:
        sheet = book.worksheets[0]
        rows, width = [], 0
        for row in sheet.iter_rows(values_only=True):
            width = max(width, len(row))
            rows.append(row)
            _check_shape(label, width, len(rows) * width)
    finally:
        book.close()
    while rows and all(v is None for v in rows[-1]):
        rows.pop()
    if not rows:
        raise TableReadError(f"{label}: the first sheet is empty; put the table on the first sheet.")
    rows = [list(r) + [None] * (width - len(r)) for r in rows]
    header = [c for c in rows[0]]
    texts = sum(isinstance(c, str) and not _looks_like_value(c) for c in header)
    if texts >= max(1, width / 2):
        names = [str(c).strip() if c is not None else f"Unnamed: {i}" for i, c in enumerate(header)]
        df = pd.DataFrame(rows[1:], columns=names)
    else:
        df = pd.DataFrame(rows, columns=list(range(width)))
    # cells as text, as a CSV would give them, so that one path turns them into numbers or missing values
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: v if v is None or isinstance(v, str) else
                                  (v.isoformat(sep=" ") if hasattr(v, "isoformat") else repr(v)
                                   if isinstance(v, float) else str(v)))
    return _clean(df, label)


def _parse_table(raw: bytes, label: str, name: str | None) -> pd.DataFrame:
    if not raw.strip():
        raise TableReadError(f"{label}: the file is empty; choose a table with a header row and data rows.")
    if (name or "").lower().endswith(EXCEL_SUFFIXES):
        return _read_excel(raw, label)
    if (name or "").lower().endswith(".xls"):
        raise TableReadError(f"{label}: old Excel files (.xls) are not read; save the sheet as .xlsx or CSV.")
    if raw[:4] == b"PAR1" or (name or "").lower().endswith((".parquet", ".pq")):
        try:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(io.BytesIO(raw)).metadata
            _check_shape(label, meta.num_columns, meta.num_rows * meta.num_columns)
            MAX_TABLE_BYTES.check(sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)),
                                  f"{label} (uncompressed)", "Use a sample of the rows.")
            df = pd.read_parquet(io.BytesIO(raw))
        except (TableReadError, InputLimitError):
            raise
        except Exception as exc:  # pyarrow raises several types (ArrowIOError, OSError, ...)
            raise TableReadError(f"{label}: not a readable Parquet file ({exc}).") from None
        return _clean(df, label)
    text, _encoding = _decode(raw, label)
    delimiter = _sniff_delimiter(text)
    ends = [i for i in (text.find("\n"), text.find("\r")) if i >= 0]
    line = text[:min(ends)] if ends else text  # the whole first line, however long
    try:
        first_line = next(csv.reader(io.StringIO(line if text.strip() else ""), delimiter=delimiter), [])
    except csv.Error as exc:  # e.g. a header cell longer than the csv module's field limit
        raise TableReadError(f"{label}: the first line is not a readable header ({exc}).") from None
    _check_shape(label, len(first_line), (text.count("\n") + 1) * max(1, len(first_line)))
    numeric_cells = sum(_looks_like_value(cell) and cell.strip() not in MISSING_TOKENS for cell in first_line)
    has_header = numeric_cells < max(1, len(first_line) / 2)
    try:
        df = pd.read_csv(
            io.StringIO(text), sep=delimiter, header=0 if has_header else None,
            na_values=list(MISSING_TOKENS), keep_default_na=False,
            skipinitialspace=True, low_memory=False,
        )
    except pd.errors.EmptyDataError as exc:
        raise TableReadError(f"{label}: no columns found; is this a CSV file with a header row?") from exc
    except (pd.errors.ParserError, csv.Error, OverflowError) as exc:
        raise TableReadError(f"{label}: not a well-formed delimited table ({exc}).") from exc
    _check_shape(label, df.shape[1], df.shape[0] * df.shape[1])
    return _clean(df, label)


def _clean(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """Strip header/cell whitespace, turn missing tokens into NaN, drop header-less empty columns."""
    df = df.copy()
    df.columns = [str(c).strip().lstrip("\ufeff") if not isinstance(c, int) else f"col_{c}"
                  for c in df.columns]
    unnamed_empty = [c for c in df.columns if c.startswith("Unnamed:") and df[c].isna().all()]
    df = df.drop(columns=unnamed_empty)
    tokens = set(MISSING_TOKENS)
    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            s = df[col].astype("string").str.strip()
            s = s.mask(s.isin(tokens))
            df[col] = s.astype(object).where(s.notna(), np.nan)
            numbers = pd.to_numeric(df[col], errors="coerce")
            if numbers.notna().sum() == s.notna().sum() and s.notna().any():
                df[col] = numbers  # numbers that pandas kept as text because of a padded missing token
    if df.shape[1] == 0:
        raise TableReadError(f"{label}: no columns found; is this a table with a header row?")
    if df.shape[0] == 0:
        raise TableReadError(f"{label}: the file has a header but no data rows.")
    return df.reset_index(drop=True)
