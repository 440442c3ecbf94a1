"""Direct identifiers (PHI): detection by column name and content, and HIPAA Safe Harbor transforms.

:func:`detect_phi` flags columns that look like the identifiers of the Safe Harbor list (45 CFR
164.514(b)(2)): names, geographic units smaller than a state, dates tied to a person, phone/fax, e-mail,
SSN, record/plan/account/licence numbers, URLs/IPs and other unique IDs. Each flag carries a default
action; the user may override any column. :func:`apply_phi` then transforms the table **before** any
statistic is taken from it and returns a record of what was done (column, category, action, how many
cells changed: never the values themselves), which is saved with the model.

Actions: ``drop`` (remove the column), ``keep`` (user's decision, recorded), ``year`` (dates reduced to
the year), ``shift`` (all shifted date columns moved by one secret random offset of up to a year, which
keeps intervals), ``zip3`` (ZIP code to its first 3 digits; the sparsely populated 3-digit areas become
``000``), ``age90`` (ages over 89 grouped into 90).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

ACTIONS = ("drop", "keep", "year", "shift", "zip3", "age90")
#: 3-digit ZIP areas with at most 20,000 people (2000 census), which Safe Harbor replaces by 000.
RESTRICTED_ZIP3 = frozenset({"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830",
                             "831", "878", "879", "884", "890", "893"})

# (category, name pattern, default action); checked in order, first match wins.
_NAME_RULES: tuple[tuple[str, str, str], ...] = (
    ("ssn", r"ssn|social.?sec", "drop"),
    ("name", r"^(first|last|middle|maiden|given|family|sur|full|person|prefix|suffix)[_ ]?(name)?$"
             r"|^name$|_name$|^name_", "drop"),
    ("contact", r"phone|fax|mobile|telephone|^tel$|e.?mail|url|website|ip.?addr", "drop"),
    ("address", r"address|street|^addr|^line[12]$", "drop"),
    ("zip", r"^zip|postal|post.?code", "zip3"),
    ("geography", r"^city$|county|town|birth.?place|^lat(itude)?$|^lon(g|gitude)?$|^geo|precinct", "drop"),
    ("record number", r"mrn|medical.?record|record.?(no|num)|account|health.?plan|member.?id|beneficiary"
                      r"|licen[cs]e|driver|passport|certificate|vehicle|device.?id|serial", "drop"),
    ("identifier", r"^id$|_id$|^id_|uuid|guid|^patient$|^subject$", "drop"),
    ("date", r"birth|dob|death|dod|admi|discharge|visit.?date|^date|_date$|^start$|^stop$", "year"),
    ("age", r"^age($|[_ ])", "age90"),
)
_CONTENT_RULES: tuple[tuple[str, str, str], ...] = (
    ("ssn", r"\d{3}-\d{2}-\d{4}", "drop"),
    ("contact", r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", "drop"),
    ("contact", r"(\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}", "drop"),
    ("contact", r"https?://\S+|(\d{1,3}\.){3}\d{1,3}", "drop"),
    ("address", r"\d+\s+[A-Za-z0-9 .'-]+\s(St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Lane|Ln|Dr|Drive|Way|"
                r"Court|Ct|Place|Pl|Branch|Landing|Unit|Apt|Suite)\b.*", "drop"),
    ("identifier", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "drop"),
)


class PhiError(ValueError):
    """A PHI override names an unknown column or action."""

    #: Messages name columns and counts, never a cell value (see medsyn_core.redaction).
    value_free_message = True


@dataclass
class PhiFinding:
    """One flagged column: what it looks like, why, and what will be done."""

    column: str
    category: str
    evidence: str  # "name" or "content" (and the rule), never the values
    action: str


def _content_category(series: pd.Series) -> tuple[str, str] | None:
    values = series.dropna()
    if values.empty or pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return None
    sample = values.astype(str).str.strip().iloc[:300]
    for category, pattern, action in _CONTENT_RULES:
        if sample.str.fullmatch(pattern).mean() >= 0.8:
            return category, action
    return None


def detect_phi(df: pd.DataFrame, schema=None) -> list[PhiFinding]:
    """Flag identifier-like columns of ``df`` by name, content and (if given) inferred schema kind."""
    findings: list[PhiFinding] = []
    for col in df.columns:
        name = str(col)
        hit = None
        for category, pattern, action in _NAME_RULES:
            if re.search(pattern, name, re.I):
                hit = PhiFinding(name, category, f"name matches {category}", action)
                break
        if hit is not None and hit.category in ("date", "age"):
            s = df[col]
            is_date = schema is not None and name in schema and schema[name].kind == "datetime"
            if hit.category == "date" and not is_date:
                hit = None  # e.g. a numeric 'death' flag is not a date
            elif hit.category == "age" and not pd.api.types.is_numeric_dtype(s):
                hit = None
        content = _content_category(df[col])
        if content is not None and (hit is None or hit.action in ("year", "age90")):
            hit = PhiFinding(name, content[0], f"values look like {content[0]}", content[1])
        if hit is None and schema is not None and name in schema:
            kind = schema[name].kind
            if kind == "identifier":
                hit = PhiFinding(name, "identifier", "a different value in every row", "drop")
            elif kind == "datetime":
                hit = PhiFinding(name, "date", "full dates (Safe Harbor keeps only the year)", "year")
        if hit is not None:
            findings.append(hit)
    return findings


def plan_phi(findings: list[PhiFinding], overrides: dict[str, str] | None, columns: list[str]
             ) -> list[PhiFinding]:
    """Apply the user's per-column actions (``{column: action}``) to the detected findings."""
    plan = {f.column: PhiFinding(**asdict(f)) for f in findings}
    for column, action in (overrides or {}).items():
        if column not in columns:
            raise PhiError(f"PHI override names column {column!r}, which is not in the table.")
        if action not in ACTIONS:
            raise PhiError(f"PHI override for {column!r}: unknown action {action!r}; "
                           f"use one of {', '.join(ACTIONS)}.")
        if column in plan:
            plan[column].action, plan[column].evidence = action, plan[column].evidence + "; set by user"
        else:
            plan[column] = PhiFinding(column, "user", "set by user", action)
    return [plan[c] for c in columns if c in plan]


def _to_datetime(s: pd.Series) -> pd.Series:
    from medsyn_tabular.schema import to_naive_datetime

    return to_naive_datetime(s)


def apply_phi(df: pd.DataFrame, plan: list[PhiFinding], seed: int = 0
              ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Transform ``df`` according to ``plan``; returns (new table, record of what was done).

    The record lists, per column, the category, the action and the number of cells changed, so that it
    can be stored in the model card without any real value.
    """
    out = df.copy()
    record: list[dict[str, Any]] = []
    shift_days = int(np.random.default_rng(seed).integers(-365, 366))  # secret: not recorded
    for f in plan:
        s = out[f.column]
        entry = {"column": f.column, "category": f.category, "evidence": f.evidence, "action": f.action}
        if f.action == "drop":
            out = out.drop(columns=[f.column])
            entry["detail"] = "column removed before training"
        elif f.action == "keep":
            entry["detail"] = "kept as is at the user's request"
        elif f.action == "year":
            years = _to_datetime(s).dt.year.astype("Int64")
            out[f.column] = years
            entry["detail"] = "dates reduced to the year"
        elif f.action == "shift":
            out[f.column] = _to_datetime(s) + pd.Timedelta(days=shift_days)
            entry["detail"] = "dates shifted by one secret offset (up to 365 days) shared by shifted columns"
        elif f.action == "zip3":
            digits = s.astype("string").str.replace(r"\D", "", regex=True).str.zfill(5).str[:3]
            digits = digits.mask(digits.isin(RESTRICTED_ZIP3), "000").mask(s.isna())
            out[f.column] = digits.astype(object).where(digits.notna(), np.nan)
            entry["detail"] = "ZIP codes truncated to 3 digits (restricted areas -> 000)"
        elif f.action == "age90":
            numeric = pd.to_numeric(s, errors="coerce")
            over = numeric > 89
            out[f.column] = numeric.where(~over, 90)
            entry["detail"] = f"ages over 89 grouped into 90 ({int(over.sum())} cells)"
        record.append(entry)
    return out, record
