"""Atomic file and folder writes: write to a temporary sibling, then rename.

A crash or an error half-way never leaves a half-written file or model folder behind: either the old
content (or nothing) is there, or the complete new one.

Everything written here is private to the account that runs MedSyn, whatever the process umask:
files are 0600 and folders 0700 (``tempfile.mkstemp``/``mkdtemp`` create them so, and
:func:`private_mkdir` creates missing parent folders so). Other local users cannot read patient
data, models or exports; see docs/security.md ("Files at rest").
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

#: Permissions of every file and folder MedSyn writes (owner only).
FILE_MODE = 0o600
DIR_MODE = 0o700


def private_mkdir(path: str | os.PathLike) -> Path:
    """Create ``path`` and any missing parents as 0700 folders (``Path.mkdir(parents=True)`` gives the
    parents the umask's mode instead); existing folders are left as they are. Returns the path."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile by another process
            folder.mkdir(mode=DIR_MODE)  # the umask can only remove bits: never wider than 0700
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = FILE_MODE) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    ``mode``: the file's permissions, 0600 by default, set before the rename so the file is never
    visible with wider ones."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give the name of a file to write instead",
                                str(path))
    private_mkdir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp's 0600 already; explicit, so a replaced file has `mode` too
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary (0700) folder; on success it is renamed to ``path``, on error it is removed.

    With ``overwrite=False`` an existing ``path`` is an error (raised before anything is written).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another output folder or remove it first.")
    private_mkdir(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: Private temporary folders older than this are left-overs of a killed process and are removed.
#: Files up to this size are handed to parsers from memory (see :func:`open_untrusted`).
UNTRUSTED_IN_MEMORY_BYTES = 64 * 2**20


class CappedReader(io.BufferedReader):
    """A binary file whose ``read(n)`` never asks for more than what is left in it."""

    def __init__(self, path: str | os.PathLike):
        raw = io.FileIO(path, "rb")
        super().__init__(raw)
        self._size = os.fstat(raw.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = max(0, min(size, self._size - self.tell()))
        return super().read(size)


def open_untrusted(path: str | os.PathLike) -> BinaryIO:
    """Open a file for a parser (pydicom, Pillow) that may find crafted lengths in it.

    Such parsers read a value with one ``read(length)``, and Python allocates ``length`` bytes before it
    reads, so a 4 GiB length in an 8-byte file allocates 4 GiB. Files up to
    :data:`UNTRUSTED_IN_MEMORY_BYTES` are returned as an in-memory ``BytesIO`` (whose reads never exceed
    what it holds, and which parses faster); larger ones as a :class:`CappedReader`. ``.name`` is the path.
    """
    path = Path(path)
    if path.stat().st_size <= UNTRUSTED_IN_MEMORY_BYTES:
        handle = io.BytesIO(path.read_bytes())
        handle.name = str(path)
        return handle
    return CappedReader(path)
