"""Shared helpers for the tabular tests (kept tiny so the whole tabular suite stays well under 3 minutes)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def one_torch_thread():
    """Tiny networks train fastest on one thread (and do not fight other jobs for the 2 CI cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def missing_table(n: int = 600, seed: int = 0):
    """A table with 10-40 % missing cells in several columns of every kind (integer, continuous,
    categorical, date) and two complete columns; missingness partly depends on other columns (MAR)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.integers(20, 90, n)
    sex = rng.choice(["F", "M"], n)
    bmi = rng.normal(27, 5, n).round(1)
    glucose = (90 + 0.4 * (age - 50) + 1.5 * (bmi - 27) + rng.normal(0, 12, n)).round()
    smoker = rng.choice(["never", "former", "current"], n, p=[0.5, 0.3, 0.2])
    visit = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 730, n), unit="D")
    risk = 0.05 * (age - 55) + 0.15 * (bmi - 27) + 0.03 * (glucose - 100)
    outcome = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    df = pd.DataFrame({"age": age, "sex": sex, "bmi": bmi, "glucose": glucose, "smoker": smoker,
                       "visit": visit, "outcome": outcome})
    df["age"] = df["age"].astype("Int64").mask(rng.random(n) < 0.12)
    df["bmi"] = df["bmi"].mask(rng.random(n) < np.where(age > 60, 0.45, 0.2))  # about 30 %
    df["glucose"] = df["glucose"].mask(rng.random(n) < 0.2)
    df["smoker"] = df["smoker"].mask(rng.random(n) < 0.4)
    df["visit"] = df["visit"].mask(rng.random(n) < 0.15)
    return df


#: A declared schema of :func:`missing_table` (for differential privacy: public bounds and categories).
MISSING_TABLE_SCHEMA = {"columns": {
    "age": {"kind": "integer", "min": 18, "max": 100},
    "sex": {"kind": "categorical", "categories": ["F", "M"], "nullable": False},
    "bmi": {"kind": "continuous", "min": 10, "max": 60},
    "glucose": {"kind": "continuous", "min": 40, "max": 300},
    "smoker": {"kind": "categorical", "categories": ["never", "former", "current"]},
    "visit": {"kind": "datetime", "min": "2019-01-01", "max": "2022-12-31", "dates_only": True},
    "outcome": {"kind": "categorical", "categories": [0, 1], "nullable": False}}}
