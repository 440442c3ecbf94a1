"""The privacy unit of a differentially private tabular fit: one row, or one patient with all their rows.

DP's ε bounds what one *unit* can change. When a patient may have several rows (visits, admissions), a
row-level ε understates the risk to that patient. The unit is declared in the schema file:

    unit: row                      # every row is a different patient (e.g. one row per patient)
    patient_key: PATIENT           # or: rows with the same PATIENT value belong to one patient
    max_rows_per_patient: 1        # k rows per patient are used (the default and, today, the only choice)

With a patient key, each patient's contribution is bounded before anything else reads the table: one row
per patient is kept, chosen uniformly at random with OS entropy (never the training seed), the key column
is removed, and the DP mechanisms then see one row per patient, so row-level DP on the bounded table is
patient-level DP on the original one. The number of patients (n) is treated as public, as the row count is.

Without a declaration, a fit is refused when a column looks like a patient or record identifier (by its
name or declared kind), because then several rows may belong to one patient; otherwise the unit is the row,
and the model card says that this was assumed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from medsyn_core.privacy import PrivacyError

#: PHI categories (by column name) that suggest a patient or record key.
KEY_LIKE_PHI = ("identifier", "record number", "name", "ssn")


@dataclass(frozen=True)
class PrivacyUnit:
    """What one DP neighbour adds or removes: ``row``, or ``patient`` (rows sharing ``key``)."""

    kind: str  # 'row' or 'patient'
    key: str | None = None
    max_rows: int = 1
    declared: bool = True  # False: no declaration, no identifier-like column, row assumed

    def describe(self) -> str:
        if self.kind == "patient":
            return (f"one patient (rows sharing {self.key!r}; at most {self.max_rows} row per patient used, "
                    "chosen at random)")
        return "one row" + ("" if self.declared else
                            " (assumed: no patient key was declared and no column looks like one)")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.describe()}


def resolve_unit(overrides: dict[str, Any], columns: list[str], key_like: list[str]) -> PrivacyUnit:
    """The declared unit, or a row unit when nothing suggests several rows per patient.

    ``key_like``: columns that look like patient/record identifiers (by name or declared kind). Raises
    :class:`PrivacyError` with advice when such a column exists and no unit is declared, or when the
    declaration is impossible.
    """
    key = overrides.get("patient_key")
    unit = overrides.get("unit")
    k = overrides.get("max_rows_per_patient", 1)
    if unit not in (None, "row", "patient"):
        raise PrivacyError(f"Unknown privacy unit {unit!r}: declare 'unit: row' (every row is a different "
                           "patient) or 'patient_key: COLUMN'.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise PrivacyError(f"max_rows_per_patient must be a whole number of at least 1 (got {k!r}).")
    if key is not None:
        if unit == "row":
            raise PrivacyError("The schema declares both 'unit: row' and a patient_key; keep one.")
        if key not in columns:
            raise PrivacyError(f"The declared patient_key {key!r} is not a column of the table.")
        if k != 1:
            raise PrivacyError(
                f"max_rows_per_patient = {k}: differentially private training uses at most 1 row per "
                "patient today (each patient's other rows are left out, so ε protects the whole patient). "
                "Set max_rows_per_patient: 1, or aggregate each patient's rows into one row before training.")
        return PrivacyUnit("patient", key, 1, True)
    if unit == "patient":
        raise PrivacyError("'unit: patient' needs 'patient_key: COLUMN' naming the column that identifies "
                           "the patient.")
    if unit == "row":
        return PrivacyUnit("row", None, 1, True)
    if key_like:
        raise PrivacyError(
            f"Column(s) {', '.join(map(repr, key_like))} look like patient or record identifiers, so one "
            "patient may have several rows and a per-row ε would understate the risk to that patient. In "
            "the schema file, declare 'patient_key: <column>' (then one row per patient is used and ε "
            "protects each patient), or 'unit: row' if every row is a different patient.")
    return PrivacyUnit("row", None, 1, False)


def bound_contributions(df: pd.DataFrame, unit: PrivacyUnit) -> pd.DataFrame:
    """At most ``unit.max_rows`` rows per patient, chosen uniformly at random from OS entropy, without
    the key column; ``df`` unchanged for a row unit. Rows with no patient key are refused."""
    if unit.kind != "patient":
        return df
    from medsyn_core.privacy.mechanisms import os_entropy_rng

    keys = df[unit.key]
    if keys.isna().any():
        raise PrivacyError(f"Some rows have no value in the patient key {unit.key!r}, so they cannot be "
                           "assigned to a patient. Fill or remove them before training.")
    order = os_entropy_rng().permutation(len(df))
    shuffled = keys.iloc[order]
    first = order[~shuffled.duplicated(keep="first").to_numpy()]
    return df.iloc[np.sort(first)].drop(columns=[unit.key]).reset_index(drop=True)
