"""Messy real tables made ready to train: numbers with units, decimal commas, number columns with a few
text cells, and per-column missing-value tokens.

:func:`detect_issues` looks at every text column and reports what it could fix (:class:`ColumnIssue`); the
user picks one fix per column (the Tabular page offers them as one-click choices) and :func:`apply_fixes`
returns a **new** DataFrame plus a record of what was done. :func:`apply_missing_tokens` does the same for
the per-column missing-value editor. Fixes:

* ``parse``: read each cell as a number: ``"80 kg"`` -> 80 (one unit per column), ``"5,1"`` -> 5.1 (decimal
  comma), thousands separators and surrounding spaces removed; cells that still are not numbers become
  missing;
* ``missing``: keep the numbers, make every other cell missing (e.g. ``"unknown"``, ``"not done"``);
* ``categorical``: keep the column as it is (text labels).

Records (:class:`FixRecord`) hold column names, the fix and cell counts, never a cell value, so they may go
into job parameters, model cards and the audit log. A :class:`ColumnIssue` is for the screen of the user
who uploaded the table: it quotes a few of the column's own tokens and units so that the choice is informed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import pandas as pd

FIXES = ("parse", "missing", "categorical")
#: A column is offered a numeric fix when at least this share of its values read as numbers after a fix.
MIN_NUMERIC_SHARE = 0.5
#: Tokens shown per column (to the uploading user only).
SHOWN_TOKENS = 8

_PLAIN = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$", re.I)
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_WITH_UNIT = re.compile(r"^(?P<number>[+-]?\d+(?:[.,]\d+)?)\s*(?P<unit>[^\d\s.,+-][^\d]{0,15})$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:[ ’'.,]\d{3})+(?:[.,]\d+)?$")


@dataclass
class ColumnIssue:
    """What is messy about one text column and which fixes apply (for the uploading user's screen)."""

    column: str
    kinds: list[str]  # 'unit', 'decimal_comma', 'thousands', 'text_cells'
    n_values: int  # non-missing cells
    n_numeric: int  # cells that read as numbers with the 'parse' fix
    n_other: int  # cells that would become missing with 'parse'
    fixes: list[str]
    units: list[str] = field(default_factory=list)  # shown only to the user who uploaded the table
    other_tokens: list[str] = field(default_factory=list)  # ditto: a few non-numeric values
    suggested: str = "parse"

    def describe(self) -> str:
        """One line about the column, in counts (no cell value)."""
        forms = []
        if "unit" in self.kinds:
            forms.append("a unit" if len(self.units) == 1 else f"{len(self.units)} different units")
        if "decimal_comma" in self.kinds:
            forms.append("decimal commas")
        if "thousands" in self.kinds:
            forms.append("thousands separators")
        text = f"{self.n_numeric} of {self.n_values} values are numbers"
        if forms:
            text += " written with " + " and ".join(forms)
        if self.n_other:
            text += f"; {self.n_other} are not numbers"
        return text + "."


@dataclass
class FixRecord:
    """What a fix did to one column: counts only, never values."""

    column: str
    fix: str
    cells_parsed: int = 0
    cells_made_missing: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def parse_number(text: str) -> float | None:
    """A number read from one cell's text (plain, decimal comma, thousands separators, or followed by a
    unit), or None."""
    t = text.strip().replace("\u00a0", " ")
    if not t:
        return None
    if _PLAIN.match(t):
        return float(t)
    if _DECIMAL_COMMA.match(t):
        return float(t.replace(",", "."))
    if _THOUSANDS.match(t):
        body = re.sub(r"[ ’']", "", t)
        # the last separator with 1-2 or 4+ digits after it (or a comma after dots) is the decimal mark
        last = max(body.rfind(","), body.rfind("."))
        if last < 0:
            return float(body)
        head, tail = body[:last], body[last + 1:]
        if len(tail) != 3 or (body.count(",") and body.count(".")):
            return float(re.sub(r"[.,]", "", head) + "." + tail)
        return float(re.sub(r"[.,]", "", body))
    m = _WITH_UNIT.match(t)
    if m:
        return float(m.group("number").replace(",", "."))
    return None


def _unit(text: str) -> str | None:
    m = _WITH_UNIT.match(text.strip().replace("\u00a0", " "))
    return m.group("unit").strip() if m else None


def _cell_kind(text: str) -> str | None:
    t = text.strip().replace("\u00a0", " ")
    if _PLAIN.match(t):
        return "plain"
    if _DECIMAL_COMMA.match(t):
        return "decimal_comma"
    if _THOUSANDS.match(t):
        return "thousands"
    if _WITH_UNIT.match(t):
        return "unit"
    return None


def detect_issues(df: pd.DataFrame) -> list[ColumnIssue]:
    """The text columns that are really numbers (with units, decimal commas, thousands separators, or a
    few text cells such as 'unknown'), with the fixes that apply; columns of plain labels are left out."""
    issues = []
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
            continue
        present = s.dropna().astype(str)
        if present.empty:
            continue
        kinds = present.map(_cell_kind)
        numeric = kinds.notna()
        n_values, n_numeric = len(present), int(numeric.sum())
        if n_numeric == 0 or n_numeric < MIN_NUMERIC_SHARE * n_values:
            continue
        found = [k for k in ("unit", "decimal_comma", "thousands") if (kinds == k).any()]
        if n_numeric < n_values:
            found.append("text_cells")
        if not found:
            continue
        units = sorted({u for u in present[kinds == "unit"].map(_unit) if u})
        other = present[~numeric]
        fixes = ["parse", "missing", "categorical"] if found != ["text_cells"] else ["missing", "categorical"]
        if len(units) > 1:  # 80 kg next to 176 lb: a number alone would mix them up
            fixes = ["categorical"]
        issues.append(ColumnIssue(
            column=str(col), kinds=found, n_values=n_values, n_numeric=n_numeric, n_other=len(other),
            fixes=fixes, units=units[:SHOWN_TOKENS],
            other_tokens=[str(v) for v in other.value_counts().index[:SHOWN_TOKENS]], suggested=fixes[0]))
    return issues


def apply_fixes(df: pd.DataFrame, choices: dict[str, str]) -> tuple[pd.DataFrame, list[FixRecord]]:
    """A new DataFrame with one fix per column applied (``choices``: column -> 'parse' | 'missing' |
    'categorical'), and what was done. Unknown columns or fixes raise ValueError."""
    out = df.copy()
    records = []
    for col, fix in choices.items():
        if col not in out.columns:
            raise ValueError(f"The table has no column {col!r}.")
        if fix not in FIXES:
            raise ValueError(f"Unknown fix {fix!r} for {col!r}; use one of {', '.join(FIXES)}.")
        s = out[col]
        if fix == "categorical" or pd.api.types.is_numeric_dtype(s):
            records.append(FixRecord(col, fix))
            continue
        present = s.notna()
        text = s.where(present, None).astype(object)
        if fix == "parse":
            values = text.map(lambda v: parse_number(str(v)) if v is not None else None)
        else:  # 'missing': plain numbers stay, everything else goes
            values = text.map(lambda v: float(str(v).strip())
                              if v is not None and _PLAIN.match(str(v).strip()) else None)
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        parsed = int(numbers.notna().sum())
        made_missing = int((present & numbers.isna()).sum())
        out[col] = numbers
        records.append(FixRecord(col, fix, cells_parsed=parsed, cells_made_missing=made_missing))
    return out, records


def apply_missing_tokens(df: pd.DataFrame, tokens: dict[str, list[str]]
                         ) -> tuple[pd.DataFrame, list[FixRecord]]:
    """A new DataFrame in which the given tokens (per column, compared after stripping spaces; numbers
    compare as numbers, so '0' matches 0 and 0.0) are missing values; a column that then holds only
    numbers becomes numeric. Returns it and the counts per column."""
    out = df.copy()
    records = []
    for col, column_tokens in tokens.items():
        if col not in out.columns:
            raise ValueError(f"The table has no column {col!r}.")
        wanted = {str(t).strip() for t in column_tokens if str(t).strip()}
        if not wanted:
            continue
        s = out[col]
        numbers = {float(t) for t in wanted if _PLAIN.match(t)}
        if pd.api.types.is_numeric_dtype(s):
            hit = s.isin(numbers) if numbers else pd.Series(False, index=s.index)
        else:
            text = s.astype("string").str.strip()
            hit = text.isin(wanted).fillna(False).astype(bool)
            if numbers:
                hit |= pd.to_numeric(text, errors="coerce").isin(numbers)
        out[col] = s.mask(hit)
        if not pd.api.types.is_numeric_dtype(out[col]):
            present = out[col].dropna()
            converted = pd.to_numeric(present, errors="coerce")
            if len(present) and converted.notna().all():
                out[col] = pd.to_numeric(out[col], errors="coerce")
        records.append(FixRecord(col, "missing tokens", cells_made_missing=int(hit.sum())))
    return out, records
