"""Loaders for the bundled tables (see ``data/README.md``)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from medsyn_core.catalog import bundled


def load_heart_cleveland() -> pd.DataFrame:
    """UCI Cleveland heart-disease table: 303 rows x 14 columns, '?' read as missing (6 cells)."""
    item = bundled("heart_cleveland")
    return pd.read_csv(item.path, na_values=["?"], keep_default_na=True)


def heart_cleveland_dictionary() -> dict[str, Any]:
    """Data dictionary of the heart table: description, unit, type and codes per column."""
    path = bundled("heart_cleveland").path.with_name("heart_cleveland.dictionary.json")
    return json.loads(path.read_text(encoding="utf-8"))


LOADERS = {"heart_cleveland": load_heart_cleveland}


def load_bundled_table(name: str) -> pd.DataFrame:
    """Load a bundled table by catalogue name."""
    if name not in LOADERS:
        raise KeyError(f"No bundled table {name!r}. Available: {', '.join(LOADERS)}.")
    return LOADERS[name]()
