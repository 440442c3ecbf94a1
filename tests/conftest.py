"""Shared test set-up: every test gets its own MedSyn home folder and runs on the CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# the engines register their background-job kinds when their job modules are imported (as app.py does)
from medsyn_imaging.training import ldm_job, training_job  # noqa: F401
from medsyn_tabular import fit_job  # noqa: F401

#: The larger reference corpora beside the checkout (CI has them); MEDSYN_TEST_SHARED_DATA overrides the
#: place (e.g. a missing folder, to check what a bare clone runs).
SHARED_DATA = Path(os.environ.get("MEDSYN_TEST_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")
#: Small, redistributable copies of some reference files (tests/data/reference/README.md).
REFERENCE_DATA = Path(__file__).resolve().parent / "data" / "reference"


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
    """The reference corpora: ``../shared/data`` when it is beside the checkout (CI), else the small
    redistributable copies in ``tests/data/reference``. Tests that need a file only the full corpora have
    are marked :data:`needs_shared_data` and skip on a bare clone."""
    return SHARED_DATA if SHARED_DATA.is_dir() else REFERENCE_DATA


#: Marker for tests that need files only the full reference corpora have (skipped on a bare clone).
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"needs the full reference data folder {SHARED_DATA} (beside the checkout; CI has it)")


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server for this test session (tests/pg_server.py), or a skip with the reason."""
    import pg_server

    bindir = pg_server.find_binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package "
                    "'postgresql' (.ci/run does) to run the PostgreSQL tests")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (requirements.txt)")
    server = pg_server.PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, monkeypatch) -> str:
    """A fresh, empty PostgreSQL database for this test, made the store of the test's MedSyn
    (``MEDSYN_DATABASE_URL``, inherited by the processes the test starts)."""
    url = postgres_server.create_database()
    monkeypatch.setenv("MEDSYN_DATABASE_URL", url)
    yield url
    postgres_server.drop_database(url)
