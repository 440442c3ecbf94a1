"""Where MedSyn keeps its files: the project root, the bundled data and the home folder.

The home folder (default ``./.medsyn/`` in the working directory, overridable with ``MEDSYN_HOME``) holds
the SQLite database and the files it points to (uploaded datasets, trained models, exports). MedSyn
creates it, and every folder in it, as 0700 (see :mod:`medsyn_core.permissions`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from medsyn_core.files import private_mkdir

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
            private_mkdir(path)
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
        private_mkdir(path)
    return path


def database_path() -> Path:
    """Path of the SQLite database inside the home folder."""
    return home_dir() / "medsyn.sqlite3"


SECRET_FILE = "secret.key"


def instance_secret() -> bytes:
    """32 random bytes kept in ``$MEDSYN_HOME/secret.key`` (0600, created once): the key of the keyed
    hashes that stand in for typed usernames and client addresses in the login throttle, so the
    database alone never holds what someone typed."""
    path = home_dir() / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    fd, tmp = tempfile.mkstemp(prefix=".secret.", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # atomic and never overwrites: the first process to create it wins
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    finally:
        os.unlink(tmp)
    return key


STALE_TEMP_SECONDS = 24 * 3600


@contextlib.contextmanager
def private_temp_dir(prefix: str = "medsyn-") -> Iterator[Path]:
    """A temporary folder only this user can read (mode 0700), under ``$MEDSYN_HOME/tmp`` rather than the
    shared system temp folder, removed with everything in it when the block ends (also on errors).

    Uploaded real data is unpacked here; folders left by a killed process are swept after a day.
    """
    root = home_dir() / "tmp"
    root.mkdir(mode=0o700, exist_ok=True)
    _sweep_stale(root)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _sweep_stale(root: Path) -> None:
    cutoff = time.time() - STALE_TEMP_SECONDS
    for entry in root.iterdir():
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
