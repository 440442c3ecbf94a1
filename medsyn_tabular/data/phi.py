"""Direct identifiers (PHI): detection by column name and content, and HIPAA Safe Harbor transforms.

:func:`detect_phi` flags columns that look like the identifiers of the Safe Harbor list (45 CFR
164.514(b)(2)): names, geographic units smaller than a state, dates tied to a person, phone/fax, e-mail,
SSN, record/plan/account/licence numbers, URLs/IPs and other unique IDs. Each flag carries a default
action; the user may override any column. :func:`apply_phi` then transforms the table **before** any
statistic is taken from it and returns a record of what was done (column, category, action, how many
cells changed: never the values themselves), which is saved with the model.

Actions: ``drop`` (remove the column), ``keep`` (user's decision, recorded), ``year`` (dates reduced to
the year), ``shift`` (all shifted date columns moved by one secret offset of up to a year, which keeps
intervals; the offset is derived from a key kept in the MedSyn home folder, see
:mod:`medsyn_core.home_keys`, never from the training seed), ``zip3`` (ZIP code to its first 3 digits; the
sparsely populated 3-digit areas become ``000``), ``age90`` (ages over 89 grouped into 90).

The actions are also constraints on what a model may generate: :func:`declared_after_phi` narrows a
column's declared bounds/categories/kind (so a DP model, whose bounds come from metadata or noise, cannot
learn ages above 90), and :func:`check_phi_output` checks every sampled table before it is returned.
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


def value_phi_category(value: object) -> str | None:
    """The PHI category one text value looks like (SSN, e-mail, phone, URL/IP, street address, UUID), or
    None. Used on single labels, e.g. the free-text answers an EHR's observations hold."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    for category, pattern, _action in _CONTENT_RULES:
        if re.fullmatch(pattern, text):
            return category
    return None


def detect_phi(df: pd.DataFrame, schema=None, content: bool = True) -> list[PhiFinding]:
    """Flag identifier-like columns of ``df`` by name, content and (if given) schema kind.

    ``content=False`` looks only at column names and the (declared) schema, never at the values: the
    differentially private path uses it, because which columns the values flag is a function of the rows.
    """
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
            elif hit.category == "age" and not (
                    pd.api.types.is_numeric_dtype(s) if content or schema is None or name not in schema
                    else schema[name].kind in ("integer", "continuous", "categorical")):
                hit = None
        content_hit = _content_category(df[col]) if content else None
        if content_hit is not None and (hit is None or hit.action in ("year", "age90")):
            hit = PhiFinding(name, content_hit[0], f"values look like {content_hit[0]}", content_hit[1])
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
    from medsyn_tabular.data.schema import to_naive_datetime

    return to_naive_datetime(s)


def apply_phi(df: pd.DataFrame, plan: list[PhiFinding], shift_days: int | None = None,
              count_cells: bool = True) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Transform ``df`` according to ``plan``; returns (new table, record of what was done).

    The record lists, per column, the category and the action (and, with ``count_cells``, the number of
    cells changed: a statistic of the rows, so differentially private fits leave it out), so that it can
    be stored in the model card without any real value. ``shift_days``: the date shift (default: the
    MedSyn home folder's secret, :func:`medsyn_core.home_keys.date_shift_days`); it is never recorded.
    """
    out = df.copy()
    record: list[dict[str, Any]] = []
    if shift_days is None and any(f.action == "shift" for f in plan):
        from medsyn_core.home_keys import date_shift_days

        shift_days = date_shift_days()
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
            # a missing age stays missing (on a nullable Int64 column `> 89` is <NA> there, and
            # `where(~over, 90)` turned every missing age into 90)
            over = (numeric > 89).fillna(False).astype(bool)
            out[f.column] = numeric.mask(over, 90)
            entry["detail"] = "ages over 89 grouped into 90" + (f" ({int(over.sum())} cells)" if count_cells
                                                                else "")
        record.append(entry)
    return out, record


def declared_after_phi(spec: dict[str, Any], action: str) -> dict[str, Any]:
    """A column's declared schema entry (kind, min, max, categories) after its PHI ``action``: the public
    facts that still hold, narrowed by the action (ages capped at 90, dates reduced to years, ZIP codes to
    3 digits, shifted dates within ±MAX_DATE_SHIFT_DAYS of the declared range). Data-independent."""
    from medsyn_core.home_keys import MAX_DATE_SHIFT_DAYS

    out = dict(spec)
    if action == "age90":
        out["phi_max"] = 90
        if out.get("max") is not None:
            out["max"] = min(float(out["max"]), 90.0)
    elif action == "year":
        out["kind"] = "integer"
        for key in ("min", "max"):
            if out.get(key) is not None:
                out[key] = int(pd.Timestamp(out[key]).year)
        out.pop("dates_only", None)
        out.pop("categories", None)
    elif action == "shift":
        pad = pd.Timedelta(days=MAX_DATE_SHIFT_DAYS)
        for key, sign in (("min", -1), ("max", 1)):
            if out.get(key) is not None:
                out[key] = str(pd.Timestamp(out[key]) + sign * pad)
    elif action == "zip3":
        out["kind"] = "categorical"
        out.pop("min", None)
        out.pop("max", None)
        if out.get("categories"):
            digits = [re.sub(r"\D", "", str(c)).zfill(5)[:3] for c in out["categories"]]
            out["categories"] = sorted({"000" if d in RESTRICTED_ZIP3 else d for d in digits})
    return out


def enforce_phi_output(rows: pd.DataFrame, record: list[dict[str, Any]]) -> pd.DataFrame:
    """``rows`` with every PHI action of ``record`` applied to the synthetic output too (ages above 89 ->
    90, ZIP codes -> 3-digit prefixes, dropped columns removed), then checked with
    :func:`check_phi_output`. For models trained correctly this changes nothing (their bounds already
    hold); it also covers folders written before the bounds obeyed the PHI actions."""
    out = rows
    for entry in record:
        column, action = entry["column"], entry["action"]
        if column not in out.columns:
            continue
        if action == "drop":
            out = out.drop(columns=[column])
        elif action == "age90":
            values = pd.to_numeric(out[column], errors="coerce")
            if (values > 90).any():
                out = out.copy()
                out[column] = out[column].mask((values > 89).fillna(False).astype(bool), 90)
        elif action == "zip3":
            text = out[column].astype("string")
            bad = text.notna() & ~text.str.fullmatch(r"\d{3}").fillna(False)
            if bad.any():
                out = out.copy()
                digits = text.str.replace(r"\D", "", regex=True).str.zfill(5).str[:3]
                out[column] = out[column].astype(object).where(~bad, digits.astype(object))
    check_phi_output(out, record)
    return out


def check_phi_output(rows: pd.DataFrame, record: list[dict[str, Any]]) -> None:
    """Raise :class:`PhiError` when sampled ``rows`` break a PHI action of the model's ``record``: a dropped
    column present, an age above 90, a full date where only years are allowed, a ZIP code longer than 3
    digits. Run on every sampled table before it is returned (a second line behind the bounds)."""
    for entry in record:
        column, action = entry["column"], entry["action"]
        if action == "drop":
            if column in rows.columns:
                raise PhiError(f"Column {column!r} was removed for PHI but appears in the synthetic rows.")
            continue
        if column not in rows.columns:
            continue
        s = rows[column].dropna()
        if s.empty:
            continue
        if action == "age90" and (pd.to_numeric(s, errors="coerce") > 90).any():
            raise PhiError(f"Column {column!r}: synthetic ages above 90 break the age90 rule.")
        if action == "year":
            values = pd.to_numeric(s, errors="coerce")
            if values.isna().any() or (values % 1 != 0).any():
                raise PhiError(f"Column {column!r}: only years may be generated (year rule).")
        if action == "zip3" and not s.astype(str).str.fullmatch(r"\d{3}").all():
            raise PhiError(f"Column {column!r}: only 3-digit ZIP prefixes may be generated (zip3 rule).")
