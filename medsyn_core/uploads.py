"""Real data at rest: files uploaded in the app, kept privately and only as long as a job needs them.

Where: ``$MEDSYN_HOME/uploads/`` (mode 0700, re-applied on every use) holds one file per upload, named
``<first 16 hex of its SHA-256>-<random>.<ext>`` (mode 0600) — never the uploaded file's own name, which
may contain a patient's name or record number.

For how long: the page saves the upload (:func:`save_upload`) and submits a job whose params name it
(``params["upload"]``; ``params["keep_upload"]`` when the user ticked "keep the uploaded file"). When
the job ends, :mod:`medsyn_core.jobs` calls :func:`release`, which deletes the file unless

* the user asked to keep it (then an admin deletes it: Data at rest page, ``medsyn uploads purge``);
* the job **failed with a checkpoint**, so it can be resumed: the file stays until the job is resumed
  (the resumed job then holds it and releases it when it ends) or an admin purges it. A *cancelled* job
  is a decision to stop: its upload is deleted, and resuming it is refused with a clear message;
* another unfinished job uses the same file (a resumed job shares its parent's file).

Every deletion is audited with the actor, the hash prefix and the size; never the file name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsyn_core import settings
from medsyn_core.auth import User, require
from medsyn_core.files import atomic_write_bytes
from medsyn_core.storage import Store

UPLOAD_PARAM = "upload"
KEEP_PARAM = "keep_upload"
#: File endings an upload keeps (what the readers look at); anything else is stored as ``.bin``.
SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".zip")  # .zip: an EHR folder of tables
DIR_MODE, FILE_MODE = 0o700, 0o600
#: What the pages tell the user about where an upload is kept and for how long.
NOTICE = ("The uploaded file is kept on this server, readable only by the MedSyn service account, in its "
          "private uploads folder, and deleted as soon as the training job ends (finished, failed or "
          "cancelled). A job that failed with a checkpoint keeps it until it is resumed or an admin "
          "deletes it. Tick 'Keep the uploaded file' to keep it after the job; an admin can then see and "
          "delete it on the Data at rest page.")


def uploads_dir() -> Path:
    """``$MEDSYN_HOME/uploads``, created if needed and made private (0700) whatever the umask."""
    path = settings.home_dir() / "uploads"
    path.mkdir(mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def save_upload(data: bytes, filename: str) -> Path:
    """Write an uploaded file privately (0600 in the 0700 uploads folder); returns its path.

    ``filename`` only chooses the ending (``.csv``, ``.parquet``…); the stored name is the SHA-256
    prefix plus a random part, so two uploads never share a file and the name reveals nothing.
    """
    suffix = Path(filename).suffix.lower()
    suffix = suffix if suffix in SUFFIXES else ".bin"
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = uploads_dir() / f"{digest}-{secrets.token_hex(4)}{suffix}"
    return atomic_write_bytes(path, data, mode=FILE_MODE)


class UploadTooLarge(ValueError):
    """A streamed upload went past its byte limit; nothing of it is kept."""

    value_free_message = True


class StreamedUpload:
    """An upload written as it arrives, never held in memory (the REST API): :meth:`write` each chunk, then
    :meth:`finish` (the final, private name; see :func:`save_upload`) or :meth:`abort`.

    The chunks go to a hidden private temporary file in the uploads folder, counted and hashed on the way;
    past ``max_bytes`` :meth:`write` raises :class:`UploadTooLarge`, and ``check(chunk)`` may raise too (a
    text-encoding check). Whatever fails, :meth:`abort` deletes the partial file: nothing half-written is
    left behind, and the final name appears (one atomic rename) only once the whole body has arrived."""

    def __init__(self, filename: str, max_bytes: int, check: Callable[[bytes], None] | None = None):
        suffix = Path(filename).suffix.lower()
        self.suffix = suffix if suffix in SUFFIXES else ".bin"
        self.folder, self.max_bytes, self.check = uploads_dir(), max_bytes, check
        fd, self.tmp = tempfile.mkstemp(prefix=".partial-", dir=self.folder)  # 0600, never listed
        self.fh = os.fdopen(fd, "wb")
        self.digest, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise UploadTooLarge(f"The upload is larger than the limit of {self.max_bytes:,} bytes; nothing "
                                 "was kept. Send a smaller file (an administrator can raise it, "
                                 "docs/security.md).")
        if self.check is not None:
            self.check(chunk)
        self.digest.update(chunk)
        self.fh.write(chunk)

    def finish(self) -> tuple[Path, str, int]:
        """``(path, sha256 hex, bytes)`` of the complete upload under its final name."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        hexdigest = self.digest.hexdigest()
        path = self.folder / f"{hexdigest[:16]}-{secrets.token_hex(4)}{self.suffix}"
        os.replace(self.tmp, path)
        return path, hexdigest, self.size

    def abort(self) -> None:
        self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def save_upload_stream(chunks: Iterable[bytes], filename: str, max_bytes: int,
                       check: Callable[[bytes], None] | None = None) -> tuple[Path, str, int]:
    """Write ``chunks`` through a :class:`StreamedUpload`; returns ``(path, sha256 hex, bytes)``."""
    upload = StreamedUpload(filename, max_bytes, check)
    try:
        for chunk in chunks:
            upload.write(chunk)
        return upload.finish()
    except BaseException:
        upload.abort()
        raise


def delete_unused(store: Store, user: User, path: str | Path, owner: str | None) -> bool:
    """Delete an upload for its owner (or an admin, ``manage_uploads``); refused while a queued or running
    job reads it (a failed job waiting to be resumed loses it: the owner chose to). Audited."""
    from medsyn_core.auth import PermissionDenied, allowed, authorise

    user = authorise(store, user, "view_models")
    if user.username != owner and not allowed(user, "manage_uploads"):
        raise PermissionDenied("Not allowed: only the person who uploaded a dataset, or an admin, may delete "
                               "it.")
    path = Path(path)
    if not is_upload(path):
        raise ValueError("Only uploaded datasets can be deleted; bundled datasets stay.")
    users = _jobs_using(store, str(path))
    running = [j["id"] for j in users if j["status"] in ("queued", "running")]
    if running:
        raise ValueError(f"The dataset is in use by job {running[0]}; cancel that job first.")
    return _delete(store, path, user.username, "deleted by its owner", [j["id"] for j in users])


def sha_prefix(path: str | Path) -> str:
    """The hash prefix in an upload's file name (what audit events name)."""
    return Path(path).name.split("-")[0][:16]


def is_upload(path: str | Path) -> bool:
    """True if ``path`` is a file in the uploads folder (not a bundled dataset or a user's own path)."""
    path = Path(path)
    return path.parent.resolve() == (settings.home_dir() / "uploads").resolve()


def _jobs_using(store: Store, path: str) -> list[dict[str, Any]]:
    """Every job (any status) whose params name the upload ``path`` (as ``upload``, or as the
    ``data_path`` it reads, which also covers jobs queued by older versions)."""
    return store.jobs_using_path(path)


def _holds(job: dict[str, Any], resumed: set[int]) -> str | None:
    """Why ``job`` still needs its upload ('running', 'kept', 'resumable'), or None."""
    if job["status"] in ("queued", "running"):
        return job["status"]
    if job["params"].get(KEEP_PARAM):
        return "kept"
    if job["status"] == "failed" and job["checkpoint"] and job["id"] not in resumed:
        return "resumable"
    return None


@dataclass(frozen=True)
class UploadEntry:
    """One file in the uploads folder, with the jobs that used it."""

    id: str                          # the file name: hash prefix + random part + ending
    path: Path
    size: int
    modified: float                  # epoch seconds
    jobs: list[int] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    state: str = "not used by any job"
    in_use: bool = False             # a queued or running job reads it: never deleted

    @property
    def sha256_prefix(self) -> str:
        return sha_prefix(self.path)


def list_uploads(store: Store, user: User) -> list[UploadEntry]:
    """Every upload still on disk, oldest first, with who used it and why it is kept (admin only).
    Also makes the folder private again (0700) if an older version left it open."""
    require(user, "manage_uploads")
    folder = settings.home_dir() / "uploads"
    if folder.is_dir():
        os.chmod(folder, DIR_MODE)
    out, files = [], []
    for path in folder.iterdir() if folder.is_dir() else []:
        try:  # a file deleted meanwhile (its job ended) is simply not listed
            if path.is_file() and not path.name.startswith("."):
                files.append((path, path.stat()))
        except FileNotFoundError:
            continue
    for path, stat in sorted(files, key=lambda f: f[1].st_mtime):
        users = _jobs_using(store, str(path))
        resumed = {j["resumed_job_id"] for j in users if j["resumed_job_id"]}
        reasons = {j["id"]: r for j in users if (r := _holds(j, resumed))}
        running = [i for i, r in reasons.items() if r in ("queued", "running")]
        if running:
            state = f"in use by job {running[0]} ({reasons[running[0]]})"
        elif any(r == "kept" for r in reasons.values()):
            state = "kept at the user's request (job " + ", ".join(
                str(i) for i, r in reasons.items() if r == "kept") + ")"
        elif reasons:
            state = "kept so that failed job " + ", ".join(map(str, reasons)) + " can be resumed"
        elif users:
            state = "left over: its jobs have ended"
        else:
            state = "not used by any job"
        out.append(UploadEntry(path.name, path, stat.st_size, stat.st_mtime, [j["id"] for j in users],
                               sorted({j["owner"] for j in users}), state, bool(running)))
    return out


def _delete(store: Store, path: Path, actor: str, reason: str, jobs: list[int]) -> bool:
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return False
    store.append_event(actor, "upload_deleted", {"file_sha256_prefix": sha_prefix(path), "bytes": size,
                                                 "jobs": jobs, "why": reason})
    return True


def release(store: Store, job: dict[str, Any]) -> bool:
    """Delete the upload of a job that has just ended unless something still needs it; True if deleted."""
    raw = (job.get("params") or {}).get(UPLOAD_PARAM)
    if not raw or not is_upload(raw):
        return False
    path = Path(raw)
    users = _jobs_using(store, str(path))
    resumed = {j["resumed_job_id"] for j in users if j["resumed_job_id"]}
    if any(_holds(j, resumed) for j in users):
        return False
    return _delete(store, path, "system", f"job {job['id']} {job['status']}", [j["id"] for j in users])


def discard(store: Store, path: str | Path, actor: str) -> bool:
    """Delete an upload that no job was submitted for (e.g. the submit was refused); audited."""
    path = Path(path)
    if not is_upload(path) or _jobs_using(store, str(path)):
        return False
    return _delete(store, path, actor, "no job was started for it", [])


def delete_upload(store: Store, user: User, upload_id: str) -> bool:
    """Delete one upload by its id (file name) as an admin; refused while a job reads it. Audited."""
    require(user, "manage_uploads")
    entry = next((u for u in list_uploads(store, user) if u.id == upload_id), None)
    if entry is None:
        raise KeyError(f"No upload {upload_id!r}; it may have been deleted already.")
    if entry.in_use:
        raise ValueError(f"Upload {upload_id!r} is {entry.state}; cancel that job first.")
    return _delete(store, entry.path, user.username, "deleted by an admin", entry.jobs)


def purge(store: Store, user: User, older_than_days: float | None = None) -> list[UploadEntry]:
    """Delete every upload not read by a queued or running job (only those older than
    ``older_than_days`` when given); returns what was deleted. Each deletion is audited."""
    require(user, "manage_uploads")
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    deleted = []
    for entry in list_uploads(store, user):
        if entry.in_use or (cutoff is not None and entry.modified > cutoff):
            continue
        why = "purged" + (f" (older than {older_than_days:g} days)" if cutoff is not None else "")
        if _delete(store, entry.path, user.username, why, entry.jobs):
            deleted.append(entry)
    return deleted
