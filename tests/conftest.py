"""Shared test set-up: every test gets its own MedSyn home folder and runs on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

# the engines register their background-job kinds when their job modules are imported (as app.py does)
from medsyn_imaging.training import training_job  # noqa: F401
from medsyn_tabular import fit_job  # noqa: F401

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def medsyn_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "medsyn_home"
    monkeypatch.setenv("MEDSYN_HOME", str(home))
    # set-then-delete so that monkeypatch restores the variable even if a test (or `medsyn --device`,
    # which sets it for the process) changes it
    monkeypatch.setenv("MEDSYN_DEVICE", "auto")
    monkeypatch.delenv("MEDSYN_DEVICE")
    return home


@pytest.fixture
def shared_data() -> Path:
    """The reference data folder beside the checkout (``../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data folder {SHARED_DATA} is missing (it sits beside the checkout)")
    return SHARED_DATA
