"""Spreadsheet-safe CSV: the one writer of every CSV that MedSyn exports (synthetic tables, label lists).

Excel, LibreOffice and Google Sheets treat a cell whose text starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return as a formula (CSV or formula injection: ``=HYPERLINK(...)`` leaks data when
clicked, ``+cmd|' /C calc'!A0`` runs programs through DDE). Synthetic tables copy the category values of
the real table, so whatever someone typed into a real record reaches the export. By default each such
*text* cell gets a leading apostrophe, as OWASP advises ("CSV Injection"); spreadsheets show the text
and never evaluate it. Full-width ``＝ ＋ － ＠`` get the same, since some spreadsheets read them as
the ASCII signs. Numbers are never touched: numeric columns are written as numbers (``-3.5`` stays
``-3.5``) and a text cell that is just a plain number (``-1``, ``+2.5e3``) is left as it is, because a
spreadsheet reads it as that number, not as a formula. Column names are escaped like cells.

Every text cell is also wrapped in double quotes (``csv.QUOTE_NONNUMERIC``; OWASP's second step), so
a carriage return or a quote inside a value can never split a row or a cell; numbers stay unquoted.

``raw=True`` writes the values unchanged (for programs that read CSV, not for spreadsheets); the
Tabular page and ``medsyn tabular sample --raw`` offer it explicitly.

The standard library's ``csv`` module and pandas have no such option; this module is the small
escaping step on top of them (``DataFrame.to_csv`` does the quoting).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsyn_core.files import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

#: First characters that make a spreadsheet evaluate a cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def escape_cell(value: Any) -> Any:
    """``value`` with a leading apostrophe if it is text a spreadsheet would evaluate; else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names are escaped (numeric, boolean and datetime
    columns are returned as they are)."""
    import pandas as pd

    out = df.copy()
    for column in out.columns:
        series = out[column]
        if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object \
                or pd.api.types.is_string_dtype(series.dtype):
            out[column] = series.astype(object).map(escape_cell)
    out.columns = [escape_cell(str(c)) for c in out.columns]
    return out


def to_csv_text(df: pd.DataFrame, raw: bool = False) -> str:
    """The table as CSV text (no index, text cells quoted); spreadsheet-safe unless ``raw``."""
    return (df if raw else spreadsheet_safe(df)).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)


def to_csv_bytes(df: pd.DataFrame, raw: bool = False) -> bytes:
    """:func:`to_csv_text` as UTF-8 bytes (the app's download button)."""
    return to_csv_text(df, raw).encode("utf-8")


def write_csv(df: pd.DataFrame, path: str | os.PathLike, raw: bool = False) -> Path:
    """Write the table as CSV atomically (0600); spreadsheet-safe unless ``raw``."""
    return atomic_write_text(path, to_csv_text(df, raw))


def safe_row(values: Iterable[Any]) -> list[Any]:
    """One row for ``csv.writer`` with every text cell escaped."""
    return [escape_cell(v) for v in values]
