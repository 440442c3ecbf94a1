"""Opening zip archives (uploaded DICOM zips, ``.npz`` arrays) without trusting what they claim.

:func:`extract_zip` streams each member to disk and counts the bytes that really come out, refusing the
archive as soon as it passes :data:`~medsyn_core.limits.MAX_UNZIPPED_BYTES` in total, a member unpacks
to more than :data:`~medsyn_core.limits.MAX_ZIP_RATIO` times its packed size (a zip bomb), or it holds
more than :data:`~medsyn_core.limits.MAX_ZIP_MEMBERS` files; member names that would leave the target
folder are refused before anything is written. The header's sizes are checked first too, so a bomb that
admits what it is costs nothing. :func:`open_npz` does the same checks for ``.npz`` files and reads each
array's header, so ``numpy.load`` never allocates an array larger than the voxel limit or larger than the
data the member really holds.

The standard library's ``zipfile`` does the parsing; this module only adds the limits (its
``ZipFile.extractall`` has none).
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from medsyn_core.limits import (
    MAX_UNZIPPED_BYTES,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    ZIP_RATIO_FREE_BYTES,
    InputLimitError,
    check_voxels,
)

_CHUNK = 1 << 20
#: Errors zipfile/zlib raise for damaged, encrypted or unsupported members.
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError,
                    OverflowError, IndexError)


def _bomb_hint(label: str) -> str:
    return (f"{label} looks like a zip bomb (it unpacks to far more than it holds); it was refused and "
            "nothing was read from it.")


def _member_parts(label: str, member: zipfile.ZipInfo) -> tuple[str, ...]:
    """The member's path as safe relative parts; refuses absolute paths, drive letters, ``..`` and NULs."""
    name = member.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if (name.startswith("/") or not parts or ".." in parts or "\0" in name
            or (parts[0].endswith(":") and len(parts[0]) == 2)):
        raise ValueError(f"{label} contains the unsafe path {member.filename!r}; re-create the zip with "
                         "relative paths only.")
    return parts


def _check_declared(label: str, members: list[zipfile.ZipInfo], archive_bytes: int) -> None:
    """Refuse on what the central directory says, before anything is unpacked."""
    MAX_ZIP_MEMBERS.check(len(members), label, "Zip fewer files at a time.")
    MAX_UNZIPPED_BYTES.check(sum(m.file_size for m in members), f"{label} (unpacked size in its header)",
                             "Upload a smaller study.")
    ratio = MAX_ZIP_RATIO.value()
    for m in members:
        packed = max(1, min(m.compress_size, archive_bytes))
        if m.file_size > ZIP_RATIO_FREE_BYTES and m.file_size > ratio * packed:
            MAX_ZIP_RATIO.check(m.file_size // packed, f"{label}: member {m.filename!r}",
                                _bomb_hint(label))


def extract_zip(archive: str | Path, target: str | Path, label: str | None = None) -> list[Path]:
    """Unpack ``archive`` into the folder ``target`` under the limits above; returns the files written.

    ``__MACOSX`` resource forks are skipped. On an error the caller removes ``target`` (it is meant to be
    a :func:`medsyn_core.settings.private_temp_dir`). ``label`` names the archive in messages (default: its
    file name). Raises ``ValueError`` (``InputLimitError`` for limits) with a readable message.
    """
    archive, target = Path(archive), Path(target)
    label = label or archive.name
    archive_bytes = archive.stat().st_size
    written: list[Path] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.filename.endswith("/")]  # folders are implied
            _check_declared(label, members, archive_bytes)
            plan = [(m, _member_parts(label, m)) for m in members]
            ratio, total = MAX_ZIP_RATIO.value(), 0
            total_limit = MAX_UNZIPPED_BYTES.value()
            for member, parts in plan:
                if parts[0] == "__MACOSX":
                    continue
                dest = target.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                packed = max(1, min(member.compress_size, archive_bytes))
                with zf.open(member) as src, open(dest, "wb") as out:
                    written.append(dest)
                    size = 0
                    while chunk := src.read(_CHUNK):
                        size += len(chunk)
                        total += len(chunk)
                        if total > total_limit:
                            MAX_UNZIPPED_BYTES.check(total, f"{label} (bytes unpacked so far)",
                                                     "Upload a smaller study.")
                        if size > ZIP_RATIO_FREE_BYTES and size > ratio * packed:
                            MAX_ZIP_RATIO.check(size // packed, f"{label}: member {member.filename!r}",
                                                _bomb_hint(label))
                        out.write(chunk)
    except InputLimitError:
        raise
    except _ZIP_READ_ERRORS as exc:
        raise ValueError(f"{label} is not a valid zip file or is damaged ({type(exc).__name__}: {exc}); "
                         "create it again (without a password).") from None
    except OSError as exc:  # e.g. a file and a folder of the same name, or a name too long for the disk
        raise ValueError(f"{label} cannot be unpacked: {exc.strerror or exc} for one of its members; "
                         "re-create the zip with ordinary file names.") from None
    return written


def check_npz(path: str | Path, label: str | None = None) -> None:
    """Check a ``.npz`` before ``numpy.load``: the zip limits, and every ``.npy`` member's header (shape x
    item size must fit both the voxel limit and the bytes the member really unpacks to)."""
    path = Path(path)
    label = label or path.name
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            _check_declared(label, members, path.stat().st_size)
            for m in members:
                if not m.filename.endswith(".npy"):
                    continue
                with zf.open(m) as fh:
                    try:
                        version = np.lib.format.read_magic(fh)
                        reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                  else np.lib.format.read_array_header_2_0)
                        shape, _fortran, dtype = reader(fh)
                    except (ValueError, TypeError, SyntaxError) as exc:
                        raise ValueError(f"{label}: array {m.filename[:-4]!r} has a damaged header "
                                         f"({exc}).") from None
                    header_bytes = fh.tell()
                voxels = int(np.prod(shape, dtype=object)) if shape else 1
                what = f"{label}: array {m.filename[:-4]!r} {tuple(shape)}"
                if voxels * dtype.itemsize > m.file_size - header_bytes:
                    raise ValueError(f"{what} claims more data than the file holds; the file is damaged "
                                     "or truncated.")
                check_voxels(voxels, what)
    except ValueError:
        raise
    except _ZIP_READ_ERRORS as exc:
        raise ValueError(f"{label} is not a readable .npz archive ({type(exc).__name__}: {exc}).") from None


@contextlib.contextmanager
def open_npz(path: str | Path, label: str | None = None) -> Iterator[np.lib.npyio.NpzFile]:
    """``numpy.load`` of a ``.npz`` (no pickles) after :func:`check_npz`; damaged members read inside the
    block become readable ``ValueError`` s."""
    path = Path(path)
    label = label or path.name
    check_npz(path, label)
    try:
        with np.load(path, allow_pickle=False) as archive:
            yield archive
    except ValueError:
        raise
    except (*_ZIP_READ_ERRORS, OSError) as exc:
        raise ValueError(f"{label} is not a readable .npz archive ({type(exc).__name__}: {exc}).") from None
