"""Resource limits for reading files that may be hostile (uploads, zips, scans, tables).

Every reader checks what a file *claims* (header sizes, dimensions, member counts) against these limits
**before** it allocates memory or writes to disk, and breaches raise :class:`InputLimitError` (a
``ValueError``, so the pages and the CLI already show it as a one-line message). Each limit is read from
an environment variable at the moment it is checked, so a deployment can raise it without code changes;
``docs/security.md`` ("Hostile files and resource limits") lists them with their defaults.

One load (an upload, a zip, a folder) may also decode several images; :func:`voxel_budget` makes the
voxel limit apply to their total, so many small-but-legal files cannot add up to an out-of-memory.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass


class InputLimitError(ValueError):
    """An input is larger (or deeper, or more numerous) than a MedSyn limit allows, or could not be read
    within the machine's memory. The message names the input, the limit and the setting that raises it."""


@dataclass(frozen=True)
class Limit:
    """One configurable limit: environment variable, default and what is counted (for messages)."""

    env: str
    default: int
    unit: str

    def value(self) -> int:
        """The limit in force: ``$env`` when set (a positive whole number, ``_`` allowed), else default."""
        raw = os.environ.get(self.env, "").strip().replace("_", "")
        if not raw:
            return self.default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise ValueError(f"{self.env} must be a positive whole number of {self.unit}, not "
                             f"{os.environ[self.env]!r}; fix or unset it.")
        return value

    def check(self, amount: int, what: str, hint: str = "") -> None:
        """Raise :class:`InputLimitError` when ``amount`` exceeds the limit; ``what`` names the input."""
        limit = self.value()
        if amount > limit:
            raise InputLimitError(
                f"{what}: {amount:,} {self.unit} is more than MedSyn's limit of {limit:,} {self.unit}. "
                f"{hint + ' ' if hint else ''}If the file is genuine, an administrator can raise the limit "
                f"with the environment variable {self.env}.")


#: Voxels (pixels x slices x frames x time points x channels) decoded from one image or one load.
MAX_VOXELS = Limit("MEDSYN_MAX_VOXELS", 4 * 512**3, "voxels")
#: Pixels of one PNG/JPEG (width x height); also Pillow's decompression-bomb limit.
MAX_IMAGE_PIXELS = Limit("MEDSYN_MAX_IMAGE_PIXELS", 8192 * 8192, "pixels")
#: Bytes unpacked from one zip (counted while streaming, not taken from its header).
MAX_UNZIPPED_BYTES = Limit("MEDSYN_MAX_UNZIPPED_BYTES", 2 * 2**30, "bytes")
#: Files in one zip.
MAX_ZIP_MEMBERS = Limit("MEDSYN_MAX_ZIP_MEMBERS", 10_000, "files")
#: Unpacked size / packed size of one zip member (real DICOM compresses 2-5x; zip bombs ~1000x).
MAX_ZIP_RATIO = Limit("MEDSYN_MAX_ZIP_RATIO", 200, "times its packed size")
#: Nesting depth of DICOM sequences (real files nest a few levels; SR trees rarely beyond ten).
MAX_DICOM_DEPTH = Limit("MEDSYN_MAX_DICOM_DEPTH", 32, "levels")
#: Bytes of one table file (CSV/TSV/Parquet, uncompressed size for Parquet).
MAX_TABLE_BYTES = Limit("MEDSYN_MAX_TABLE_BYTES", 512 * 2**20, "bytes")
#: Columns of one table.
MAX_TABLE_COLUMNS = Limit("MEDSYN_MAX_TABLE_COLUMNS", 2_000, "columns")
#: Cells (rows x columns) of one table.
MAX_TABLE_CELLS = Limit("MEDSYN_MAX_TABLE_CELLS", 20_000_000, "cells")

ALL_LIMITS = (MAX_VOXELS, MAX_IMAGE_PIXELS, MAX_UNZIPPED_BYTES, MAX_ZIP_MEMBERS, MAX_ZIP_RATIO,
              MAX_DICOM_DEPTH, MAX_TABLE_BYTES, MAX_TABLE_COLUMNS, MAX_TABLE_CELLS)

#: Members below this many unpacked bytes are not held to MAX_ZIP_RATIO (small text compresses well).
ZIP_RATIO_FREE_BYTES = 1 << 20

_voxels_used: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("medsyn_voxels_used",
                                                                                default=None)


@contextlib.contextmanager
def voxel_budget() -> Iterator[None]:
    """Within this block, :func:`check_voxels` also caps the *total* voxels of everything decoded.

    Nested blocks share the outermost budget (a zip inside an upload counts against the upload).
    The budget is per thread/context, so two app sessions never share one.
    """
    if _voxels_used.get() is not None:
        yield
        return
    token = _voxels_used.set([0])
    try:
        yield
    finally:
        _voxels_used.reset(token)


def check_voxels(count: int, what: str) -> None:
    """Refuse an image of ``count`` voxels (or one that would take the current load past the limit)
    before it is decoded; charge it to the current :func:`voxel_budget`."""
    count = int(count)
    if count < 0:
        raise InputLimitError(f"{what}: its header gives a negative size; the file is damaged.")
    MAX_VOXELS.check(count, what, "Its header asks for an image too large to decode safely.")
    used = _voxels_used.get()
    if used is not None:
        MAX_VOXELS.check(used[0] + count, f"{what} (with the images read before it in this input)",
                         "Load fewer or smaller images at a time.")
        used[0] += count


@contextlib.contextmanager
def reading_input(what: str) -> Iterator[None]:
    """Turn a ``MemoryError`` or ``RecursionError`` raised while reading ``what`` into a readable
    :class:`InputLimitError` (the partial result is dropped as the stack unwinds)."""
    failure = ""
    try:
        yield
    except MemoryError:
        failure = "memory"
    except RecursionError:
        failure = "recursion"
    # Raised outside the except blocks so that the original exception, and the frames holding the partly
    # built arrays, are released now rather than kept alive as this error's __context__.
    if failure == "memory":
        raise InputLimitError(f"{what} needs more memory than this machine has available; load a smaller "
                              "input, or lower the limits in docs/security.md so that such files are "
                              "refused up front.")
    if failure == "recursion":
        raise InputLimitError(f"{what} is nested too deeply to be read safely; it was refused.")


def error_detail(exc: BaseException, *paths) -> str:
    """``"TypeName: message"`` of a library's exception with the given paths (and their folders) cut down
    to file names, so that server paths never reach a user."""
    from pathlib import Path

    text = f"{type(exc).__name__}: {exc}"
    for path in paths:
        path = Path(path)
        for form in {str(path), str(path.resolve()), str(path.absolute())}:
            text = text.replace(form, path.name)
    return text
