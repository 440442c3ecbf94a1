"""Where MedSyn keeps its files: the project root, the bundled data and the home folder.

The home folder (default ``./.medsyn/`` in the working directory, overridable with ``MEDSYN_HOME``) holds
the SQLite database and the files it points to (uploaded datasets, trained models, exports).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Root of the MedSyn source tree (the folder that holds ``data/`` and ``models/``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Bundled default datasets (see ``data/README.md`` for provenance and licenses).
DATA_DIR = PROJECT_ROOT / "data"
#: Models shipped with MedSyn (demo generators and classifiers with model cards).
BUNDLED_MODELS_DIR = PROJECT_ROOT / "models"

HOME_ENV = "MEDSYN_HOME"


def home_dir(create: bool = True) -> Path:
    """The MedSyn home folder: ``$MEDSYN_HOME`` if set, else ``./.medsyn`` (created on first use)."""
    raw = os.environ.get(HOME_ENV, "").strip()
    path = Path(raw).expanduser() if raw else Path.cwd() / ".medsyn"
    path = path.resolve()
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeError(
                f"Cannot create the MedSyn home folder {path}: {exc.strerror}. "
                f"Set {HOME_ENV} to a writable folder."
            ) from exc
    return path


def models_dir(create: bool = True) -> Path:
    """Folder of models trained by the user (inside the home folder)."""
    path = home_dir(create) / "models"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def database_path() -> Path:
    """Path of the SQLite database inside the home folder."""
    return home_dir() / "medsyn.sqlite3"
