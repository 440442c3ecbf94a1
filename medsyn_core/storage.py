"""The embedded SQLite store: datasets, training runs, models and audit events.

One database file in the MedSyn home folder (``medsyn.sqlite3``), opened in WAL mode so that the app,
a background worker and the CLI can use it at the same time. The schema is versioned with SQLite's
``user_version``; :data:`MIGRATIONS` lists the steps from one version to the next, so later releases add
a step instead of editing an old one.

Every audit event is chained to the previous one with SHA-256 (``hash = sha256(prev_hash + payload)``),
so an edited, deleted or reordered row breaks the chain. Deleting the *newest* rows leaves a shorter but
valid chain, so ``audit_anchor`` keeps the count, last id and head hash, updated in the same transaction
as each append; :meth:`Store.check_audit_chain` compares them. Limit: anyone who can write the database
file can also rewrite the whole chain and the anchor consistently; only a head hash recorded outside the
database (``medsyn audit verify`` prints it; ``--expect-head`` checks it) catches that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsyn_core import settings
from medsyn_core.files import FILE_MODE, private_mkdir

#: Schema steps; ``MIGRATIONS[i]`` upgrades a database from version ``i`` to ``i + 1``.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE datasets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('tabular', 'imaging')),
        path TEXT NOT NULL,
        source TEXT NOT NULL,            -- 'bundled' or 'upload' or a description
        n_rows INTEGER,                  -- rows (tabular) or images/slices (imaging)
        sha256 TEXT,
        created_at REAL NOT NULL,
        UNIQUE (name, kind)
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,              -- e.g. 'tabular-fit', 'imaging-train', 'evaluate'
        dataset_id INTEGER REFERENCES datasets(id),
        params_json TEXT NOT NULL DEFAULT '{}',
        metrics_json TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'running'
            CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
        model_id INTEGER REFERENCES models(id),
        started_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        engine TEXT NOT NULL,            -- e.g. 'ctgan', 'tvae', 'stylegan2', 'resnet9'
        path TEXT NOT NULL,
        card_json TEXT NOT NULL DEFAULT '{}',
        dp_epsilon REAL,                 -- NULL when trained without differential privacy
        created_at REAL NOT NULL
    );
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        details_json TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    """,
    # v2: accounts, persisted login throttling, background jobs, and an anchor that makes deleting the
    # newest audit rows visible (the chain alone cannot: a shortened chain is still a valid chain).
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,     -- argon2id, never shown or logged
        role TEXT NOT NULL CHECK (role IN ('admin', 'researcher', 'clinician')),
        active INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL
    );
    CREATE TABLE login_failures (
        username TEXT PRIMARY KEY,       -- as typed, lower-cased, so unknown names are throttled too
        failures INTEGER NOT NULL,
        last_failure_at REAL NOT NULL,
        locked_until REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,              -- e.g. 'example-primes', 'tabular-train'
        target TEXT NOT NULL,            -- 'package.module:function' run by the worker
        params_json TEXT NOT NULL DEFAULT '{}',
        owner TEXT NOT NULL,
        needs_gpu INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
        progress REAL NOT NULL DEFAULT 0,        -- fraction 0..1
        message TEXT NOT NULL DEFAULT '',
        payload_json TEXT NOT NULL DEFAULT '{}', -- small live numbers, e.g. losses
        result_json TEXT,
        error TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        checkpoint TEXT,                 -- last checkpoint path reported by the job
        resume_from TEXT,                -- checkpoint this job was resumed from
        resumed_job_id INTEGER REFERENCES jobs(id),
        worker_pid INTEGER,
        heartbeat_at REAL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        n_events INTEGER NOT NULL,
        last_id INTEGER NOT NULL,
        head_hash TEXT NOT NULL
    );
    INSERT INTO audit_anchor (id, n_events, last_id, head_hash)
        SELECT 1, COUNT(*), COALESCE(MAX(id), 0),
               COALESCE((SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1),
                        '0000000000000000000000000000000000000000000000000000000000000000')
        FROM audit_events
    """,
    # v3: optional single sign-on: an admin links an account to the identity an OIDC provider asserts
    # (by default its e-mail claim); a login through the provider finds the account by this link only.
    """
    ALTER TABLE users ADD COLUMN sso_identity TEXT;
    CREATE UNIQUE INDEX users_sso_identity ON users (sso_identity) WHERE sso_identity IS NOT NULL
    """,
    # v4: the login throttle keeps keyed hashes (of the typed username, and of the client address)
    # instead of the typed text, which held passwords typed into the username box. The old rows are
    # overwritten on disk (secure_delete) as they are dropped.
    """
    PRAGMA secure_delete = ON;
    DELETE FROM login_failures;
    DROP TABLE login_failures;
    CREATE TABLE login_throttle (
        key TEXT PRIMARY KEY,            -- 'user:' or 'source:' + HMAC-SHA256 prefix, never the text
        failures INTEGER NOT NULL,
        last_failure_at REAL NOT NULL,
        locked_until REAL NOT NULL DEFAULT 0
    )
    """,
    # v5: the models table says which engine a model belongs to ('tabular', 'imaging') and, separately, its
    # kind ('ctgan', 'stylegan2', 'resnet9' ...); until v4 the engine column held the kind.
    """
    ALTER TABLE models ADD COLUMN kind TEXT NOT NULL DEFAULT '';
    UPDATE models SET kind = engine;
    UPDATE models SET engine = CASE WHEN kind IN ('ctgan', 'tvae') THEN 'tabular'
                                    WHEN kind IN ('stylegan2', 'dcgan', 'resnet9') THEN 'imaging'
                                    ELSE engine END
    """,
    # v6: an admin's approval lets clinicians use a model below the quality bar or not yet evaluated
    # (medsyn_core.approvals); keyed by the model's name, compared without case like the registry.
    """
    CREATE TABLE model_approvals (
        model_name TEXT PRIMARY KEY COLLATE NOCASE,
        approved_by TEXT NOT NULL,
        approved_at REAL NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    )
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
GENESIS_HASH = "0" * 64


class StoreError(RuntimeError):
    """The database cannot be opened or is newer than this MedSyn."""


@dataclass(frozen=True)
class AuditCheck:
    """Result of verifying the audit chain: ``ok``, and where and why it first breaks."""

    ok: bool
    n_events: int
    head_hash: str
    first_bad_id: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"Audit chain intact: {self.n_events} events, head {self.head_hash[:16]}…"
        where = f"at event {self.first_bad_id}" if self.first_bad_id is not None else "at the end"
        return f"Audit chain BROKEN {where}: {self.reason}"


@dataclass(frozen=True)
class ModelRecord:
    id: int
    name: str
    engine: str  # 'tabular' or 'imaging'
    path: str
    card: dict[str, Any]
    dp_epsilon: float | None
    created_at: float
    kind: str = ""  # 'ctgan', 'tvae', 'stylegan2', 'dcgan', 'resnet9', ...


#: Seconds a connection waits for another one's lock before reporting the database busy.
BUSY_TIMEOUT_S = 30.0


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _make_private(db: Path) -> None:
    """Create the database file as 0600 before SQLite opens it (SQLite gives its ``-wal`` and ``-shm``
    files the database file's mode), and take group/other access off an existing one and its WAL/SHM
    (older MedSyn versions left them 0644: password hashes and the audit log)."""
    try:
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        return
    except FileExistsError:
        pass
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if path.stat().st_mode & 0o077:
                os.chmod(path, FILE_MODE)


def _event_hash(prev_hash: str, ts: float, actor: str, action: str, details_json: str) -> str:
    payload = json.dumps([prev_hash, repr(ts), actor, action, details_json], separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Store:
    """Handle on the MedSyn SQLite database; cheap to create, one connection per instance."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else settings.database_path()
        private_mkdir(self.path.parent)
        _make_private(self.path)
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.01
        while True:
            try:
                self._conn = self._open()
                break
            except sqlite3.OperationalError as exc:
                # Switching a fresh file to WAL, or opening one while the last other connection is
                # closing (checkpoint and WAL removal), can report "locked" without waiting on the
                # busy handler. Both are momentary: retry with back-off until the busy timeout.
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise StoreError(f"Cannot open the MedSyn database {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except sqlite3.Error as exc:
                raise StoreError(f"Cannot open the MedSyn database {self.path}: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        """Connect, set WAL (persistent in the file, so only switched once) and migrate."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            self._migrate()
        except BaseException:
            conn.close()
            raise
        return conn

    # -- schema -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The database {self.path} has schema version {version}, newer than this MedSyn "
                    f"({SCHEMA_VERSION}). Upgrade MedSyn or point MEDSYN_HOME elsewhere."
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {step + 1}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- datasets -----------------------------------------------------------------------------
    def register_dataset(
        self, name: str, kind: str, path: str | Path, source: str,
        n_rows: int | None = None, sha256: str | None = None,
    ) -> int:
        """Insert or update a dataset by (name, kind); returns its id."""
        self._conn.execute(
            """INSERT INTO datasets (name, kind, path, source, n_rows, sha256, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (name, kind) DO UPDATE SET path=excluded.path, source=excluded.source,
                   n_rows=excluded.n_rows, sha256=excluded.sha256""",
            (name, kind, str(path), source, n_rows, sha256, time.time()),
        )
        row = self._conn.execute(
            "SELECT id FROM datasets WHERE name=? AND kind=?", (name, kind)
        ).fetchone()
        return int(row["id"])

    def list_datasets(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM datasets" + (" WHERE kind=?" if kind else "") + " ORDER BY name"
        return [dict(r) for r in self._conn.execute(sql, (kind,) if kind else ())]

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, kind: str, params: dict[str, Any], dataset_id: int | None = None) -> int:
        cur = self._conn.execute(
            "INSERT INTO runs (kind, dataset_id, params_json, started_at) VALUES (?, ?, ?, ?)",
            (kind, dataset_id, json.dumps(params, default=str), time.time()),
        )
        return int(cur.lastrowid)

    def finish_run(
        self, run_id: int, status: str = "finished", metrics: dict[str, Any] | None = None,
        model_id: int | None = None,
    ) -> None:
        self._conn.execute(
            "UPDATE runs SET status=?, metrics_json=?, model_id=COALESCE(?, model_id), finished_at=? "
            "WHERE id=?",
            (status, json.dumps(metrics or {}, default=str), model_id, time.time(), run_id),
        )

    @contextlib.contextmanager
    def recorded_run(self, kind: str, params: dict[str, Any], dataset_id: int | None = None):
        """Record a run around a block: yields a dict whose ``metrics`` and ``model_id`` the block fills;
        the run ends 'finished', or 'cancelled'/'failed' (with the error) when the block raises."""
        run_id = self.start_run(kind, params, dataset_id)
        outcome: dict[str, Any] = {"metrics": {}, "model_id": None}
        try:
            yield outcome
        except BaseException as exc:
            from medsyn_core.redaction import public_error

            status = "cancelled" if type(exc).__name__ in ("JobCancelled", "KeyboardInterrupt") else "failed"
            self.finish_run(run_id, status, {"error": public_error(exc)})
            raise
        self.finish_run(run_id, "finished", outcome["metrics"], outcome["model_id"])

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["params"] = json.loads(out.pop("params_json"))
        out["metrics"] = json.loads(out.pop("metrics_json"))
        return out

    # -- jobs (reading; medsyn_core.jobs owns the life cycle) -----------------------------------------
    @staticmethod
    def _job_row(row) -> dict[str, Any]:
        out = dict(row)
        out["params"] = json.loads(out.pop("params_json"))
        out["payload"] = json.loads(out.pop("payload_json"))
        out["result"] = json.loads(out.pop("result_json")) if out.get("result_json") else None
        out.pop("result_json", None)
        return out

    def job(self, job_id: int) -> dict[str, Any] | None:
        """The job ``job_id`` with its params, payload and result decoded, or None."""
        row = self._conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return self._job_row(row) if row else None

    def jobs_using_path(self, path: str) -> list[dict[str, Any]]:
        """Every job (any status) whose params name the file ``path`` as ``upload`` or ``data_path``."""
        rows = self._conn.execute(
            "SELECT * FROM jobs WHERE json_extract(params_json, '$.upload') = ? "
            "OR json_extract(params_json, '$.data_path') = ? ORDER BY id", (path, path)).fetchall()
        return [self._job_row(r) for r in rows]

    # -- models -------------------------------------------------------------------------------
    def register_model(
        self, name: str, kind: str, path: str | Path, card: dict[str, Any],
        dp_epsilon: float | None = None, *, replace: bool = False, actor: str = "medsyn",
    ) -> int:
        """Register the model ``name`` (a safe slug, :mod:`medsyn_core.names`) of ``kind`` ('ctgan',
        'stylegan2', ...; its engine follows from the kind); returns its id.

        A name that is taken (compared without case) is refused with :class:`~medsyn_core.names.NameTaken`
        unless ``replace=True``: then the row keeps its id, points at the new folder, and the replacement
        is written to the audit log (as ``actor``) in the same transaction. Never re-points silently.
        """
        from medsyn_core.model_card import engine_of
        from medsyn_core.names import NameTaken, check_name

        check_name(name)
        engine = engine_of(kind)
        card_json = json.dumps(card, default=str)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            old = self._conn.execute("SELECT * FROM models WHERE lower(name) = lower(?)", (name,)).fetchone()
            if old is not None and not replace:
                raise NameTaken(f"A model called {old['name']!r} already exists. Choose another name, or "
                                "replace it explicitly (the 'Replace the existing model' box, or "
                                "--overwrite/--replace).", old["name"])
            if old is None:
                model_id = int(self._conn.execute(
                    "INSERT INTO models (name, engine, kind, path, card_json, dp_epsilon, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, engine, kind, str(path), card_json, dp_epsilon, time.time())).lastrowid)
            else:
                model_id = int(old["id"])
                self._conn.execute(
                    "UPDATE models SET name=?, engine=?, kind=?, path=?, card_json=?, dp_epsilon=?, "
                    "created_at=? WHERE id=?",
                    (name, engine, kind, str(path), card_json, dp_epsilon, time.time(), model_id))
                self._append(actor, "model_replaced", {
                    "model": name, "model_id": model_id, "kind": kind, "previous_kind": old["kind"],
                    "previous_created_at": old["created_at"], "same_folder": old["path"] == str(path)})
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return model_id

    def model_named(self, name: str) -> str | None:
        """The registered name equal to ``name`` ignoring case, or None when it is free."""
        row = self._conn.execute("SELECT name FROM models WHERE lower(name) = lower(?)", (name,)).fetchone()
        return row["name"] if row else None

    def list_models(self, engine: str | None = None, kind: str | None = None) -> list[ModelRecord]:
        """Registered models, oldest first; optionally of one engine ('tabular', 'imaging') or kind."""
        where = [(c, v) for c, v in (("engine", engine), ("kind", kind)) if v]
        sql = "SELECT * FROM models" + (" WHERE " + " AND ".join(f"{c}=?" for c, _ in where) if where else "")
        rows = self._conn.execute(sql + " ORDER BY created_at", tuple(v for _, v in where))
        return [
            ModelRecord(r["id"], r["name"], r["engine"], r["path"], json.loads(r["card_json"]),
                        r["dp_epsilon"], r["created_at"], r["kind"])
            for r in rows
        ]

    def model_id(self, name: str) -> int | None:
        row = self._conn.execute("SELECT id FROM models WHERE name=?", (name,)).fetchone()
        return int(row["id"]) if row else None

    def delete_model(self, name: str) -> bool:
        """Remove the model's row (not its files); True if it existed."""
        cur = self._conn.execute("DELETE FROM models WHERE name=?", (name,))
        return cur.rowcount > 0

    # -- audit --------------------------------------------------------------------------------
    def append_event(self, actor: str, action: str, details: dict[str, Any] | None = None) -> int:
        """Append a hash-chained audit event. ``details`` pass through
        :func:`medsyn_core.redaction.redact_details` first (quoted literals and free-text error fields
        are stripped), but callers still must never pass real patient values or identifiers."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            event_id = self._append(actor, action, details)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return event_id

    def _append(self, actor: str, action: str, details: dict[str, Any] | None) -> int:
        """Append one event inside the caller's open transaction."""
        from medsyn_core.redaction import redact_details

        details_json = json.dumps(redact_details(details or {}), sort_keys=True, default=str)
        last = self._conn.execute("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
        prev = last["hash"] if last else GENESIS_HASH
        ts = time.time()
        digest = _event_hash(prev, ts, actor, action, details_json)
        cur = self._conn.execute(
            "INSERT INTO audit_events (ts, actor, action, details_json, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (ts, actor, action, details_json, prev, digest),
        )
        self._conn.execute(
            "UPDATE audit_anchor SET n_events = n_events + 1, last_id = ?, head_hash = ? WHERE id = 1",
            (cur.lastrowid, digest),
        )
        return int(cur.lastrowid)

    def audit_events(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM audit_events ORDER BY id")]

    def verify_audit_chain(self) -> int | None:
        """Return the id of the first event whose chain link is broken, or None if intact.

        Deleted newest rows are reported as the id after the last remaining row (see
        :meth:`check_audit_chain` for the reason text).
        """
        check = self.check_audit_chain()
        return None if check.ok else check.first_bad_id

    def check_audit_chain(self, expect_head: str | None = None) -> AuditCheck:
        """Walk the chain in id order and compare its end with the anchor (and ``expect_head``).

        Detects: an edited row (its hash no longer matches its content), a deleted or moved row (the
        next row's ``prev_hash`` no longer matches, or ids are not consecutive), deleted newest rows
        (count / last id / head differ from the anchor) and a removed anchor.
        """
        prev, n, last_id = GENESIS_HASH, 0, 0
        for row in self._conn.execute("SELECT * FROM audit_events ORDER BY id"):
            rid = int(row["id"])
            expected = _event_hash(prev, row["ts"], row["actor"], row["action"], row["details_json"])
            if row["hash"] != expected and row["prev_hash"] == prev:
                return AuditCheck(False, n, prev, rid, "the row's content does not match its hash "
                                  "(the row was edited)")
            if row["prev_hash"] != prev:
                return AuditCheck(False, n, prev, rid, "the row does not follow the previous row "
                                  "(a row before it was deleted, inserted or moved, or it was edited)")
            if rid != last_id + 1:
                return AuditCheck(False, n, prev, rid, f"ids jump from {last_id} to {rid} "
                                  "(rows were deleted and the chain re-linked)")
            prev, n, last_id = row["hash"], n + 1, rid
        anchor = self._conn.execute("SELECT * FROM audit_anchor WHERE id = 1").fetchone()
        if anchor is None:
            return AuditCheck(False, n, prev, None, "the audit anchor row is missing")
        if (anchor["n_events"], anchor["last_id"], anchor["head_hash"]) != (n, last_id, prev):
            return AuditCheck(
                False, n, prev, last_id + 1,
                f"the chain ends at event {last_id} ({n} events) but {anchor['n_events']} events up to "
                f"id {anchor['last_id']} were recorded (the newest rows were deleted)")
        if expect_head is not None and expect_head != prev:
            return AuditCheck(False, n, prev, None, "the head hash differs from the one recorded "
                              "outside the database (the log was rewritten)")
        return AuditCheck(True, n, prev)
