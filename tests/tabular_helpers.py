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


def clinical_table(n: int = 400, seed: int = 0):
    """A table with every kind of clinical rule to declare (:data:`CLINICAL_RULES`), and a few real rows
    that break the rejection rules (data-entry errors), as real tables have."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n)
    birth = pd.Timestamp("1940-01-01") + pd.to_timedelta(rng.integers(0, 60 * 365, n), unit="D")
    visit = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 5 * 365, n), unit="D")
    admission = visit + pd.to_timedelta(rng.integers(0, 30, n), unit="D")
    discharge = admission + pd.to_timedelta(rng.integers(0, 20, n), unit="D")
    systolic = rng.normal(130, 15, n).round()
    diastolic = (systolic - rng.uniform(25, 55, n)).round()
    pregnant = np.where(sex == "F", rng.choice(["yes", "no"], n, p=[0.15, 0.85]), "no")
    pregnancies = np.where(sex == "F", rng.integers(0, 6, n), 0)
    height = rng.normal(170, 10, n).round()
    weight = rng.normal(75, 12, n).round(1)
    df = pd.DataFrame({
        "sex": sex, "birth_date": birth, "visit_date": visit, "admission": admission, "discharge": discharge,
        "systolic": systolic, "diastolic": diastolic, "pregnant": pregnant, "pregnancies": pregnancies,
        "height": height, "weight": weight,
        "bmi": (weight / (height / 100) ** 2).round(2), "age": 0})
    years = visit.year - birth.year - ((visit.month < birth.month)
                                       | ((visit.month == birth.month) & (visit.day < birth.day)))
    df["age"] = np.asarray(years, dtype=int)
    df.loc[0, "diastolic"] = df.loc[0, "systolic"] + 5  # a data-entry error in the real table
    df.loc[1, ["sex", "pregnant"]] = ["M", "yes"]
    df.loc[2, "discharge"] = df.loc[2, "admission"] - pd.Timedelta(days=3)
    return df


#: One rule of each kind for :func:`clinical_table` (the schema file's ``constraints:`` section).
CLINICAL_RULES = [
    "admission <= discharge",                      # inequality between dates
    "diastolic < systolic",                        # inequality between numbers
    "pregnancies = 0 if sex = M",                  # a value that holds under a condition
    "systolic in [90, 200] if sex = F",            # a range under a condition
    {"columns": ["sex", "pregnant"], "allowed": [["F", "yes"], ["F", "no"], ["M", "no"]]},  # combinations
    "derive bmi = round(weight / (height / 100) ** 2, 2)",     # derived columns
    "derive age = years_between(birth_date, visit_date)",
]
