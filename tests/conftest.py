"""Shared test set-up: every test gets its own MedSyn home folder and runs on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def medsyn_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "medsyn_home"
    monkeypatch.setenv("MEDSYN_HOME", str(home))
    monkeypatch.delenv("MEDSYN_DEVICE", raising=False)
    return home


@pytest.fixture
def shared_data() -> Path:
    """The reference data folder beside the checkout (``../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data folder {SHARED_DATA} is missing (it sits beside the checkout)")
    return SHARED_DATA
