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


def heart_cleveland_metadata() -> dict[str, Any]:
    """Public metadata of the heart table for differential privacy (schema-file layout): category codes
    from the data dictionary and clinically plausible bounds, none of them read from the rows."""
    import yaml

    path = bundled("heart_cleveland").path.with_name("heart_cleveland.metadata.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


LOADERS = {"heart_cleveland": load_heart_cleveland}
#: Public metadata (bounds, categories) shipped with a bundled table, used by DP training.
METADATA = {"heart_cleveland": heart_cleveland_metadata}


def load_bundled_table(name: str) -> pd.DataFrame:
    """Load a bundled table by catalogue name."""
    if name not in LOADERS:
        raise KeyError(f"No bundled table {name!r}. Available: {', '.join(LOADERS)}.")
    return LOADERS[name]()
