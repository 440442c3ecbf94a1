"""Reading and exporting the audit log (the hash chain itself lives in :mod:`medsyn_core.storage`).

Events carry usernames, actions, job/model names and parameters; never patient identifiers,
passwords, password hashes or secrets (the callers of ``Store.append_event`` keep it that way).
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime

from medsyn_core.auth import User, authorise
from medsyn_core.storage import AuditCheck, Store

CSV_COLUMNS = ("id", "time_utc", "actor", "action", "details_json", "prev_hash", "hash")


def audit_rows(store: Store, user: User) -> list[dict]:
    """All events, oldest first, with a readable UTC time (admin only)."""
    authorise(store, user, "view_audit")
    rows = []
    for event in store.audit_events():
        row = dict(event)
        row["time_utc"] = datetime.fromtimestamp(row["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(row)
    return rows


def verify(store: Store, user: User | None, expect_head: str | None = None) -> AuditCheck:
    """Check the chain (admin only in the app; the CLI passes ``None`` as the machine's operator)."""
    if user is not None:
        authorise(store, user, "view_audit")
    return store.check_audit_chain(expect_head)


def export_csv(store: Store, user: User) -> str:
    """The whole log as CSV text (with the hashes, so the export itself can be re-verified)."""
    rows = audit_rows(store, user)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    store.append_event(user.username, "audit_exported", {"n_events": len(rows)})
    return buf.getvalue()


def record_upload(store: Store, user: User, where: str, blobs: list[bytes], **counts: int) -> str:
    """Audit an upload of real data: the real actor (re-loaded, must be allowed to upload real data),
    where (e.g. ``imaging``), a SHA-256 prefix of the contents, the number of files and bytes, and any
    extra ``counts`` (rows, images). Never file names or values. Returns the full hex digest: the
    file's SHA-256 for one file (as the Tabular page records), else the SHA-256 of the files' hashes."""
    hashes = [hashlib.sha256(blob).digest() for blob in blobs]
    hexdigest = hashes[0].hex() if len(hashes) == 1 else hashlib.sha256(b"".join(hashes)).hexdigest()
    return record_upload_digest(store, user, where, hexdigest, len(blobs), sum(len(b) for b in blobs),
                                **counts)


def record_upload_digest(store: Store, user: User, where: str, hexdigest: str, files: int, n_bytes: int,
                         **counts: int) -> str:
    """:func:`record_upload` for contents hashed while they streamed to disk (the REST API's uploads):
    the same event from the SHA-256 hex digest, the number of files and bytes."""
    user = authorise(store, user, "upload_real_data")
    details = {"where": where, "file_sha256_prefix": hexdigest[:16], "files": int(files),
               "bytes": int(n_bytes), **{k: int(v) for k, v in counts.items()}}
    store.append_event(user.username, "upload", details)
    return hexdigest
