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

import hashlib
import os
import secrets
import time
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
