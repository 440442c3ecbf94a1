"""Conditions for sampling a sub-population: ``sex=F``, ``age>=65``, ``smoking_status!=smokes``.

Exact conditions on categorical/boolean columns and range conditions on numeric/datetime columns; a list
of conditions means all of them (AND). :func:`parse_conditions` checks every condition against the fitted
columns, so an unknown column or value is a clear error before any generation.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medsyn_tabular.transformers.table import MISSING, OTHER, ColumnEncoding

_OPS = {"==": operator.eq, "=": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
        ">": operator.gt, "<": operator.lt}
_PATTERN = re.compile(r"^\s*(?P<col>.+?)\s*(?P<op>==|!=|>=|<=|=|>|<)\s*(?P<val>.*?)\s*$")


class ConditionError(ValueError):
    """A condition names an unknown column or value, or cannot be met."""

    #: Messages name columns and counts, never a cell value (see medsyn_core.redaction).
    value_free_message = True


@dataclass(frozen=True)
class Condition:
    column: str
    op: str  # one of ==, !=, >=, <=, >, <
    value: Any  # a real category value (categorical) or a number / timestamp (numeric)

    def mask(self, s: pd.Series) -> np.ndarray:
        """Boolean (n,) of the rows of ``s`` that satisfy the condition (missing never does)."""
        if isinstance(self.value, (int, float, pd.Timestamp)) and not isinstance(self.value, bool) \
                and (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s)):
            res = _OPS[self.op](s, self.value)
            return np.asarray(res.fillna(False), dtype=bool) & s.notna().to_numpy()
        if pd.api.types.is_numeric_dtype(s) and not isinstance(self.value, str):
            res = _OPS[self.op](s.astype(float), float(self.value))
            return np.asarray(res.fillna(False), dtype=bool) & s.notna().to_numpy()
        keys = s.astype(object).map(lambda v: str(v) if pd.notna(v) else None)
        res = _OPS[self.op](keys, str(self.value))
        return np.asarray(res, dtype=bool) & s.notna().to_numpy()

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value}"


def _same_number(a: Any, b: Any) -> bool:
    """True when both read as the same number ('0' matches the category 0.0)."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _parse_one(text: str, number: int) -> tuple[str, str, str]:
    m = _PATTERN.match(text)
    if not m or not m.group("val"):
        raise ConditionError(f"Cannot read condition {number}; write it like 'sex=F' or 'age>=65'.")
    op = "==" if m.group("op") == "=" else m.group("op")
    return m.group("col"), op, m.group("val").strip("'\"")


def parse_conditions(conditions, columns: list[ColumnEncoding], dropped: dict[str, str] | None = None
                     ) -> list[Condition]:
    """Turn ``conditions`` into checked :class:`Condition` objects.

    ``conditions``: None, a string (``"age>=65"``), a list of strings, or a dict ``{column: value}``
    (equality). ``columns``: the fitted column encodings. ``dropped``: columns removed before training,
    with the reason, for a helpful error message. Errors name the condition's number and column, never
    a value (neither the one typed nor the model's categories or bounds).
    """
    if conditions is None:
        return []
    if isinstance(conditions, str):
        conditions = [conditions]
    raw = [(k, "==", v) for k, v in conditions.items()] if isinstance(conditions, dict) \
        else [_parse_one(c, i) if isinstance(c, str) else tuple(c) for i, c in enumerate(conditions, 1)]
    by_name = {c.name: c for c in columns}
    out = []
    for number, (column, op, value) in enumerate(raw, 1):
        if column not in by_name:
            if dropped and column in dropped:
                raise ConditionError(f"Column {column!r} was not modelled ({dropped[column]}), so it cannot "
                                     "be conditioned on.")
            raise ConditionError(f"Unknown column {column!r} in condition {number}. Modelled columns: "
                                 f"{', '.join(by_name)}.")
        enc = by_name[column]
        if enc.is_numeric:
            try:
                parsed = pd.Timestamp(value) if enc.kind == "datetime" else float(value)
            except (TypeError, ValueError):
                wanted = "date" if enc.kind == "datetime" else "number"
                raise ConditionError(f"Condition {number} on {column!r} needs a {wanted}.") from None
            out.append(Condition(column, op, parsed))
        else:
            if op not in ("==", "!="):
                raise ConditionError(f"Column {column!r} is categorical: use = or != (not {op}).")
            real = [v for v in enc.slots if v not in (OTHER, MISSING)] + list(enc.other_values)
            match = [v for v in real if str(v) == str(value)] or [v for v in real if _same_number(v, value)]
            if not match:
                raise ConditionError(f"Unknown value in condition {number}: column {column!r} has no such "
                                     f"category (the model knows {len(real)}; a sample without conditions "
                                     "shows them).")
            out.append(Condition(column, op, match[0]))
    return out


def rows_satisfying(df: pd.DataFrame, conditions: list[Condition]) -> np.ndarray:
    """Boolean (n,) of the rows of ``df`` that satisfy every condition."""
    keep = np.ones(len(df), dtype=bool)
    for cond in conditions:
        keep &= cond.mask(df[cond.column])
    return keep
