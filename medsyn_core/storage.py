"""The store: datasets, training runs, models, accounts, jobs and the audit log, in SQLite or PostgreSQL.

Embedded default: one SQLite file in the MedSyn home folder (``medsyn.sqlite3``), opened in WAL mode so that
the app, a background worker, the API and the CLI can use it at the same time. With
``MEDSYN_DATABASE_URL=postgresql://...`` the same tables live in a PostgreSQL server instead, so that app and
API processes on several hosts share one store (psycopg 3; see docs/storage.md for why not SQLAlchemy).

Every SQL statement of MedSyn is a method of :class:`Store` (the rest of the code calls methods, never SQL),
written once in the SQL both back ends understand, with ``?`` placeholders (turned into ``%s`` for
psycopg). The schema is versioned (SQLite: ``user_version``; PostgreSQL: the ``medsyn_schema`` table);
:data:`MIGRATIONS` (SQLite) and :data:`PG_MIGRATIONS` (PostgreSQL) list the steps from one version to the
next with the same numbers, so later releases add a step to both instead of editing an old one.

Concurrency: a write that reads before it writes runs in :meth:`Store.transaction`. SQLite's
``BEGIN IMMEDIATE`` takes the database's one write lock, so such transactions queue; on PostgreSQL the
transaction locks the tables it names (``LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE``, which conflicts with
itself and with every writer of the table), so appends to the audit chain and login-throttle counts queue
the same way. Claiming a job takes a transaction-level advisory lock (the running-job limits are global) and
the row with ``SELECT ... FOR UPDATE SKIP LOCKED``.

Every audit event is chained to the previous one with SHA-256 (``hash = sha256(prev_hash + payload)``),
so an edited, deleted or reordered row breaks the chain. Deleting the *newest* rows leaves a shorter but
valid chain, so ``audit_anchor`` keeps the count, last id and head hash, updated in the same transaction
as each append; :meth:`Store.check_audit_chain` compares them. Event ids are given by the appender (last
id + 1, under the lock), never by a sequence, so a rolled-back append leaves no gap. Limit: anyone who can
write the database can also rewrite the whole chain and the anchor consistently; only a head hash recorded
outside the database (``medsyn audit verify`` prints it; ``--expect-head`` checks it) catches that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsyn_core import settings
from medsyn_core.files import FILE_MODE, private_mkdir

#: The PostgreSQL connection URL (``postgresql://user@host/db``); unset or empty: the SQLite file.
DATABASE_URL_ENV = "MEDSYN_DATABASE_URL"
#: Name this host's job workers record with the jobs they start (default: the host name).
WORKER_HOST_ENV = "MEDSYN_WORKER_HOST"
SQLITE, POSTGRES = "sqlite", "postgresql"
#: Keys of PostgreSQL's transaction-level advisory locks (arbitrary constants, "MedSyn" + a number).
_MIGRATION_LOCK, _JOB_CLAIM_LOCK = 0x4D656453796E01, 0x4D656453796E02

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
    # v6: API tokens (stored as SHA-256 of a 256-bit random secret; expiry; revocable), the host of a job's
    # worker (several hosts share one PostgreSQL store: a pid means something only on its own host), and the
    # owner of a dataset uploaded through the API.
    """
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL REFERENCES users(username),
        label TEXT NOT NULL DEFAULT '',
        token_hash TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the secret (shown once, never stored)
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL,
        last_used_at REAL
    );
    ALTER TABLE jobs ADD COLUMN worker_host TEXT;
    ALTER TABLE datasets ADD COLUMN owner TEXT
    """,
    # v7: an admin's approval lets clinicians use a model below the quality bar or not yet evaluated
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

#: The same steps for PostgreSQL (``MEDSYN_DATABASE_URL=postgresql://...``): same tables, columns and
#: version numbers; ``DOUBLE PRECISION`` where SQLite's REAL is already 8 bytes (the audit hash covers
#: ``repr(ts)``, so times must round-trip exactly), identity columns where SQLite has its implicit rowid.
PG_MIGRATIONS: list[str] = [
    """
    CREATE TABLE datasets (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('tabular', 'imaging')),
        path TEXT NOT NULL,
        source TEXT NOT NULL,
        n_rows BIGINT,
        sha256 TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        UNIQUE (name, kind)
    );
    CREATE TABLE models (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        engine TEXT NOT NULL,
        path TEXT NOT NULL,
        card_json TEXT NOT NULL DEFAULT '{}',
        dp_epsilon DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE runs (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        dataset_id BIGINT REFERENCES datasets(id),
        params_json TEXT NOT NULL DEFAULT '{}',
        metrics_json TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'running'
            CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
        model_id BIGINT REFERENCES models(id),
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION
    );
    CREATE TABLE audit_events (
        id BIGINT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        details_json TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE users (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'researcher', 'clinician')),
        active INTEGER NOT NULL DEFAULT 1,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE login_failures (
        username TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_failure_at DOUBLE PRECISION NOT NULL,
        locked_until DOUBLE PRECISION NOT NULL DEFAULT 0
    );
    CREATE TABLE jobs (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        params_json TEXT NOT NULL DEFAULT '{}',
        owner TEXT NOT NULL,
        needs_gpu INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
        progress DOUBLE PRECISION NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT '',
        payload_json TEXT NOT NULL DEFAULT '{}',
        result_json TEXT,
        error TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        checkpoint TEXT,
        resume_from TEXT,
        resumed_job_id BIGINT REFERENCES jobs(id),
        worker_pid INTEGER,
        heartbeat_at DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION
    );
    CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        n_events BIGINT NOT NULL,
        last_id BIGINT NOT NULL,
        head_hash TEXT NOT NULL
    );
    INSERT INTO audit_anchor (id, n_events, last_id, head_hash)
        SELECT 1, COUNT(*), COALESCE(MAX(id), 0),
               COALESCE((SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1),
                        '0000000000000000000000000000000000000000000000000000000000000000')
        FROM audit_events
    """,
    """
    ALTER TABLE users ADD COLUMN sso_identity TEXT;
    CREATE UNIQUE INDEX users_sso_identity ON users (sso_identity) WHERE sso_identity IS NOT NULL
    """,
    """
    DROP TABLE login_failures;
    CREATE TABLE login_throttle (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_failure_at DOUBLE PRECISION NOT NULL,
        locked_until DOUBLE PRECISION NOT NULL DEFAULT 0
    )
    """,
    """
    ALTER TABLE models ADD COLUMN kind TEXT NOT NULL DEFAULT '';
    UPDATE models SET kind = engine;
    UPDATE models SET engine = CASE WHEN kind IN ('ctgan', 'tvae') THEN 'tabular'
                                    WHEN kind IN ('stylegan2', 'dcgan', 'resnet9') THEN 'imaging'
                                    ELSE engine END
    """,
    """
    CREATE TABLE api_tokens (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        username TEXT NOT NULL REFERENCES users(username),
        label TEXT NOT NULL DEFAULT '',
        token_hash TEXT NOT NULL UNIQUE,
        created_by TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION,
        last_used_at DOUBLE PRECISION
    );
    ALTER TABLE jobs ADD COLUMN worker_host TEXT;
    ALTER TABLE datasets ADD COLUMN owner TEXT
    """,
    # v7: model approvals (names compared without case, as in the registry: the key is the lower-cased
    # name, the name as typed is kept beside it)
    """
    CREATE TABLE model_approvals (
        model_name TEXT PRIMARY KEY,
        approved_by TEXT NOT NULL,
        approved_at DOUBLE PRECISION NOT NULL,
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


def database_url() -> str | None:
    """``$MEDSYN_DATABASE_URL`` when it names a PostgreSQL database, None when unset (the SQLite file)."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"{DATABASE_URL_ENV} must be a postgresql:// URL (or unset for the embedded SQLite "
                         "file).")
    return url


def worker_host() -> str:
    """The name this host's job workers record with the jobs they start."""
    return os.environ.get(WORKER_HOST_ENV, "").strip() or socket.gethostname()


class Store:
    """Handle on the MedSyn database; cheap to create, one connection per instance.

    ``Store()`` opens the database of this deployment: PostgreSQL when ``$MEDSYN_DATABASE_URL`` is set,
    else the SQLite file in the home folder. ``Store(path)`` opens that SQLite file; ``Store(url=...)``
    that PostgreSQL database."""

    def __init__(self, path: str | Path | None = None, *, url: str | None = None):
        self._depth = 0  # open transaction() blocks
        self.url = url if url is not None else (None if path is not None else database_url())
        if self.url:
            self.backend, self.path = POSTGRES, None
            self._conn = self._open_postgres()
            return
        self.backend = SQLITE
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
        # check_same_thread off: one handle may serve a request whose steps run on different threads of a
        # pool (the API's dependencies); it is still used by one step at a time, never concurrently
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
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

    def _open_postgres(self):
        """Connect to PostgreSQL (autocommit; :meth:`transaction` opens transactions) and migrate."""
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:  # pragma: no cover - psycopg is in requirements.txt
            raise StoreError(f"{DATABASE_URL_ENV} is set but psycopg is not installed "
                             "(pip install 'psycopg[binary]').") from exc
        try:
            conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                   connect_timeout=int(BUSY_TIMEOUT_S))
        except psycopg.Error as exc:  # the URL may hold a password: never quoted
            raise StoreError(f"Cannot connect to the PostgreSQL database named by {DATABASE_URL_ENV}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                             ) from exc
        try:
            conn.execute(f"SET lock_timeout = '{int(BUSY_TIMEOUT_S * 1000)}ms'")
            self._conn = conn
            self._migrate()
        except BaseException:
            conn.close()
            raise
        return conn

    # -- SQL plumbing (the only place that talks to the driver) ----------------------------------------
    def _run(self, sql: str, params: tuple | list = ()):
        """Execute one statement written with ``?`` placeholders; returns the driver's cursor."""
        if self.backend == POSTGRES:
            sql = sql.replace("?", "%s")
        return self._conn.execute(sql, tuple(params))

    def _one(self, sql: str, params: tuple | list = ()) -> dict[str, Any] | None:
        rows = self._run(sql, params).fetchall()
        return dict(rows[0]) if rows else None

    def _all(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._run(sql, params).fetchall()]

    def _insert(self, sql: str, params: tuple | list) -> int:
        """Run an INSERT and return the new row's id (``RETURNING id``, both back ends)."""
        return int(dict(self._run(sql + " RETURNING id", params).fetchall()[0])["id"])

    def _changed(self, sql: str, params: tuple | list = ()) -> int:
        """Run an UPDATE or DELETE; returns the number of rows it changed."""
        return int(self._run(sql, params).rowcount)

    @contextlib.contextmanager
    def transaction(self, *lock_tables: str) -> Iterator[Store]:
        """One write transaction (committed at the end of the block, rolled back on an exception).

        SQLite: ``BEGIN IMMEDIATE``, the one write lock of the file, so all such blocks queue. PostgreSQL:
        ``BEGIN`` plus ``LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE`` for each of ``lock_tables`` (a mode that
        conflicts with itself and with every writer), so blocks that read then write a table queue as on
        SQLite. Nested blocks join the outer transaction (and add their table locks to it)."""
        if self._depth:
            self._lock(lock_tables)
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            if self.backend == POSTGRES:
                with self._conn.transaction():
                    self._lock(lock_tables)
                    yield self
            else:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
        finally:
            self._depth = 0

    def _lock(self, tables: tuple[str, ...]) -> None:
        if self.backend == POSTGRES:
            for table in tables:
                if not table.isidentifier():
                    raise ValueError(f"not a table name: {table!r}")
                self._conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")

    # -- schema -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION` (one transaction; concurrent openers queue)."""
        with self.transaction():
            if self.backend == POSTGRES:
                self._run("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
                self._run("CREATE TABLE IF NOT EXISTS medsyn_schema "
                          "(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
            version = self._read_version()
            if version > SCHEMA_VERSION:
                where = self.path if self.backend == SQLITE else f"named by {DATABASE_URL_ENV}"
                raise StoreError(
                    f"The database {where} has schema version {version}, newer than this MedSyn "
                    f"({SCHEMA_VERSION}). Upgrade MedSyn or point MEDSYN_HOME elsewhere."
                )
            steps = MIGRATIONS if self.backend == SQLITE else PG_MIGRATIONS
            for step in range(version, SCHEMA_VERSION):
                for statement in steps[step].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                if self.backend == SQLITE:
                    self._conn.execute(f"PRAGMA user_version = {step + 1}")
                else:
                    self._run("INSERT INTO medsyn_schema (id, version) VALUES (1, ?) "
                              "ON CONFLICT (id) DO UPDATE SET version = excluded.version", (step + 1,))

    def _read_version(self) -> int:
        if self.backend == SQLITE:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        row = self._one("SELECT version FROM medsyn_schema WHERE id = 1")
        return int(row["version"]) if row else 0

    @property
    def schema_version(self) -> int:
        return self._read_version()

    def describe(self) -> str:
        """Where the data lives, for people (never the URL, which may hold a password)."""
        return f"SQLite file {self.path}" if self.backend == SQLITE else f"PostgreSQL ({DATABASE_URL_ENV})"

    def ping(self) -> bool:
        """True if the database answers (readiness checks)."""
        return self._one("SELECT 1 AS ok") is not None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- datasets -----------------------------------------------------------------------------
    def register_dataset(
        self, name: str, kind: str, path: str | Path, source: str,
        n_rows: int | None = None, sha256: str | None = None, owner: str | None = None,
    ) -> int:
        """Insert or update a dataset by (name, kind); returns its id. ``owner``: who uploaded it (kept
        from the first registration when not given)."""
        return self._insert(
            """INSERT INTO datasets (name, kind, path, source, n_rows, sha256, created_at, owner)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (name, kind) DO UPDATE SET path=excluded.path, source=excluded.source,
                   n_rows=excluded.n_rows, sha256=excluded.sha256,
                   owner=COALESCE(excluded.owner, datasets.owner)""",
            (name, kind, str(path), source, n_rows, sha256, time.time(), owner),
        )

    def list_datasets(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM datasets" + (" WHERE kind=?" if kind else "") + " ORDER BY name"
        return self._all(sql, (kind,) if kind else ())

    def dataset(self, dataset_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM datasets WHERE id=?", (dataset_id,))

    def delete_dataset(self, dataset_id: int) -> bool:
        """Remove the dataset's row (runs that used it keep their records, without the link)."""
        with self.transaction("runs", "datasets"):
            self._changed("UPDATE runs SET dataset_id=NULL WHERE dataset_id=?", (dataset_id,))
            return self._changed("DELETE FROM datasets WHERE id=?", (dataset_id,)) > 0

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, kind: str, params: dict[str, Any], dataset_id: int | None = None) -> int:
        return self._insert(
            "INSERT INTO runs (kind, dataset_id, params_json, started_at) VALUES (?, ?, ?, ?)",
            (kind, dataset_id, json.dumps(params, default=str), time.time()),
        )

    def finish_run(
        self, run_id: int, status: str = "finished", metrics: dict[str, Any] | None = None,
        model_id: int | None = None,
    ) -> None:
        self._run(
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
        out = self._one("SELECT * FROM runs WHERE id=?", (run_id,))
        if out is None:
            return None
        out["params"] = json.loads(out.pop("params_json"))
        out["metrics"] = json.loads(out.pop("metrics_json"))
        return out

    # -- accounts (medsyn_core.auth owns the rules) ----------------------------------------------------
    def has_users(self) -> bool:
        return self._one("SELECT 1 AS one FROM users LIMIT 1") is not None

    def user_row(self, username: str) -> dict[str, Any] | None:
        """The account row with its password hash (for :mod:`medsyn_core.auth` only), or None."""
        return self._one("SELECT username, password_hash, role, active, sso_identity FROM users "
                         "WHERE username=?", (username,))

    def insert_user(self, username: str, password_hash: str, role: str) -> bool:
        """Create an account; False (nothing written) if the username is taken."""
        with self.transaction("users"):
            if self._one("SELECT 1 AS one FROM users WHERE username=?", (username,)):
                return False
            self._insert("INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
                         (username, password_hash, role, time.time()))
        return True

    def set_user_role(self, username: str, role: str) -> bool:
        return self._changed("UPDATE users SET role=? WHERE username=?", (role, username)) > 0

    def set_user_active(self, username: str, active: bool) -> bool:
        return self._changed("UPDATE users SET active=? WHERE username=?", (int(active), username)) > 0

    def set_password_hash(self, username: str, password_hash: str) -> None:
        self._run("UPDATE users SET password_hash=? WHERE username=?", (password_hash, username))

    def count_active_admins(self) -> int:
        return int(self._one("SELECT COUNT(*) AS n FROM users WHERE role='admin' AND active=1")["n"])

    def list_users(self) -> list[dict[str, Any]]:
        """Usernames, roles, state and single sign-on link (never the hashes)."""
        return self._all("SELECT username, role, active, sso_identity, created_at FROM users "
                         "ORDER BY username")

    def user_with_sso(self, identity: str, other_than: str | None = None) -> dict[str, Any] | None:
        """The account linked to the single sign-on ``identity`` (optionally: other than ``other_than``)."""
        if other_than is None:
            return self._one("SELECT username, role, active FROM users WHERE sso_identity=?", (identity,))
        return self._one("SELECT username, role, active FROM users WHERE sso_identity=? AND username<>?",
                         (identity, other_than))

    def set_sso_identity(self, username: str, identity: str | None) -> bool:
        return self._changed("UPDATE users SET sso_identity=? WHERE username=?", (identity, username)) > 0

    def active_user(self, username: str) -> dict[str, Any] | None:
        """``{"username", "role"}`` of the active account ``username``, or None."""
        return self._one("SELECT username, role FROM users WHERE username=? AND active=1", (username,))

    # -- login throttle (rows keyed by keyed hashes; medsyn_core.auth owns the policy) ---------------------
    def throttle_row(self, key: str) -> dict[str, Any] | None:
        return self._one("SELECT failures, last_failure_at, locked_until FROM login_throttle WHERE key=?",
                         (key,))

    def put_throttle(self, key: str, failures: int, last_failure_at: float, locked_until: float) -> None:
        self._run("""INSERT INTO login_throttle (key, failures, last_failure_at, locked_until)
                     VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET failures=excluded.failures,
                     last_failure_at=excluded.last_failure_at, locked_until=excluded.locked_until""",
                  (key, failures, last_failure_at, locked_until))

    def delete_throttle(self, key: str) -> None:
        self._run("DELETE FROM login_throttle WHERE key=?", (key,))

    def clear_throttle_locks(self) -> None:
        """Lift every lock (keeps the counts): tests and an admin's emergency unlock."""
        self._run("UPDATE login_throttle SET locked_until=0")

    # -- API tokens (medsyn_core.auth owns the rules; only hashes are stored) -------------------------
    # -- model approvals (admins let clinicians use a model; medsyn_core.approvals) ---------------------
    def set_model_approval(self, name: str, by: str, at: float, note: str) -> None:
        """Record (or replace) the approval of model ``name`` (names compared without case)."""
        with self.transaction("model_approvals"):
            self._run("DELETE FROM model_approvals WHERE lower(model_name) = lower(?)", (name,))
            self._run("INSERT INTO model_approvals (model_name, approved_by, approved_at, note) "
                      "VALUES (?, ?, ?, ?)", (name, by, at, note))

    def delete_model_approval(self, name: str) -> bool:
        return self._changed("DELETE FROM model_approvals WHERE lower(model_name) = lower(?)", (name,)) > 0

    def model_approval(self, name: str) -> dict[str, Any] | None:
        return self._one("SELECT model_name, approved_by, approved_at, note FROM model_approvals "
                         "WHERE lower(model_name) = lower(?)", (name,))

    def approved_model_names(self) -> set[str]:
        """Lower-cased names of every approved model."""
        return {r["model_name"].lower() for r in self._all("SELECT model_name FROM model_approvals")}

    # -- first run ----------------------------------------------------------------------------------
    def anyone_logged_in(self) -> bool:
        return self._one("SELECT 1 AS one FROM audit_events WHERE action='login' LIMIT 1") is not None

    def first_admin_name(self) -> str | None:
        row = self._one("SELECT username FROM users WHERE role='admin' AND active=1 ORDER BY id LIMIT 1")
        return row["username"] if row else None

    def insert_token(self, username: str, label: str, token_hash: str, created_by: str,
                     expires_at: float) -> int:
        return self._insert("INSERT INTO api_tokens (username, label, token_hash, created_by, created_at, "
                            "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                            (username, label, token_hash, created_by, time.time(), expires_at))

    def token_by_hash(self, token_hash: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM api_tokens WHERE token_hash=?", (token_hash,))

    def token(self, token_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM api_tokens WHERE id=?", (token_id,))

    def list_tokens(self, username: str | None = None) -> list[dict[str, Any]]:
        """Tokens (never their hashes), newest first; of one account when ``username`` is given."""
        cols = "id, username, label, created_by, created_at, expires_at, revoked_at, last_used_at"
        if username is None:
            return self._all(f"SELECT {cols} FROM api_tokens ORDER BY id DESC")
        return self._all(f"SELECT {cols} FROM api_tokens WHERE username=? ORDER BY id DESC", (username,))

    def revoke_token(self, token_id: int) -> bool:
        """Mark the token revoked now; False if there is none or it was already revoked."""
        return self._changed("UPDATE api_tokens SET revoked_at=? WHERE id=? AND revoked_at IS NULL",
                             (time.time(), token_id)) > 0

    def touch_token(self, token_id: int, when: float) -> None:
        self._run("UPDATE api_tokens SET last_used_at=? WHERE id=?", (when, token_id))

    # -- jobs (medsyn_core.jobs owns the life cycle) ---------------------------------------------------
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
        row = self._one("SELECT * FROM jobs WHERE id=?", (job_id,))
        return self._job_row(row) if row else None

    def list_jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        """Every job, newest first, decoded."""
        return [self._job_row(r) for r in self._all("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))]

    def jobs_using_path(self, path: str) -> list[dict[str, Any]]:
        """Every job (any status) whose params name the file ``path`` as ``upload`` or ``data_path``."""
        if self.backend == POSTGRES:
            upload, data = "(params_json::jsonb ->> 'upload')", "(params_json::jsonb ->> 'data_path')"
        else:
            upload, data = "json_extract(params_json, '$.upload')", "json_extract(params_json, '$.data_path')"
        rows = self._all(f"SELECT * FROM jobs WHERE {upload} = ? OR {data} = ? ORDER BY id", (path, path))
        return [self._job_row(r) for r in rows]

    def insert_job(self, kind: str, target: str, params: dict[str, Any], owner: str, needs_gpu: bool,
                   resume_from: str | None = None, resumed_job_id: int | None = None) -> int:
        return self._insert(
            "INSERT INTO jobs (kind, target, params_json, owner, needs_gpu, resume_from, resumed_job_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, target, json.dumps(params, default=str), owner, int(needs_gpu), resume_from,
             resumed_job_id, time.time()))

    def cancel_job(self, job_id: int) -> bool:
        """Flag the job for cancelling; a queued job is cancelled at once (True then)."""
        with self.transaction():
            self._run("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
            return self._changed("UPDATE jobs SET status='cancelled', finished_at=?, "
                                 "message='cancelled before start' WHERE id=? AND status='queued'",
                                 (time.time(), job_id)) > 0

    def running_jobs(self) -> list[dict[str, Any]]:
        """``id, worker_pid, worker_host, started_at, heartbeat_at`` of every running job."""
        return self._all("SELECT id, worker_pid, worker_host, started_at, heartbeat_at FROM jobs "
                         "WHERE status='running' ORDER BY id")

    def fail_running_job(self, job_id: int, error: str) -> bool:
        """Mark a running job failed (its process died); False if it was no longer running."""
        return self._changed("UPDATE jobs SET status='failed', finished_at=?, error=? "
                             "WHERE id=? AND status='running'", (time.time(), error, job_id)) > 0

    def claim_next_job(self, max_cpu_jobs: int, host: str | None = None) -> int | None:
        """Atomically move the oldest startable queued job to 'running' (at most one GPU job and
        ``max_cpu_jobs`` others running in the whole store); its id, or None if none may start now."""
        with self.transaction():
            if self.backend == POSTGRES:  # the limits count every worker's jobs: claims queue here
                self._run("SELECT pg_advisory_xact_lock(?)", (_JOB_CLAIM_LOCK,))
            counts = {int(r["needs_gpu"]): int(r["n"]) for r in self._all(
                "SELECT needs_gpu, COUNT(*) AS n FROM jobs WHERE status='running' GROUP BY needs_gpu")}
            startable = [g for g, limit in ((0, max_cpu_jobs), (1, 1)) if counts.get(g, 0) < limit]
            if not startable:
                return None
            lock = " FOR UPDATE SKIP LOCKED" if self.backend == POSTGRES else ""
            row = self._one("SELECT id FROM jobs WHERE status='queued' AND needs_gpu IN ("
                            + ", ".join("?" * len(startable)) + ") ORDER BY id LIMIT 1" + lock,
                            tuple(startable))
            if row is None:
                return None
            now = time.time()
            if not self._changed("UPDATE jobs SET status='running', started_at=?, heartbeat_at=?, "
                                 "worker_host=? WHERE id=? AND status='queued'",
                                 (now, now, host or worker_host(), row["id"])):
                return None
            return int(row["id"])

    def set_job_worker(self, job_id: int, pid: int, heartbeat: bool = False) -> None:
        """Record the process running the job (and, from the job process itself, a heartbeat)."""
        if heartbeat:
            self._run("UPDATE jobs SET worker_pid=?, heartbeat_at=? WHERE id=?", (pid, time.time(), job_id))
        else:
            self._run("UPDATE jobs SET worker_pid=? WHERE id=?", (pid, job_id))

    def report_job_progress(self, job_id: int, fraction: float, message: str,
                            payload: dict[str, Any]) -> bool:
        """Store the job's progress and heartbeat; returns whether a cancel was requested."""
        self._run("UPDATE jobs SET progress=?, message=?, payload_json=?, heartbeat_at=? WHERE id=?",
                  (fraction, message, json.dumps(payload, default=str), time.time(), job_id))
        return self.job_cancel_requested(job_id)

    def job_cancel_requested(self, job_id: int) -> bool:
        row = self._one("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,))
        return bool(row and row["cancel_requested"])

    def set_job_checkpoint(self, job_id: int, path: str) -> None:
        self._run("UPDATE jobs SET checkpoint=? WHERE id=?", (path, job_id))

    def finish_job(self, job_id: int, status: str, result: Any, error: str | None) -> None:
        """The job's final status, result (JSON) and error; progress 1 when finished."""
        self._run("UPDATE jobs SET status=?, result_json=?, error=?, finished_at=?, "
                  "progress=CASE WHEN ?='finished' THEN 1 ELSE progress END WHERE id=?",
                  (status, json.dumps(result, default=str) if result is not None else None, error,
                   time.time(), status, job_id))

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
        with self.transaction("models"):
            old = self._one("SELECT * FROM models WHERE lower(name) = lower(?)", (name,))
            if old is not None and not replace:
                raise NameTaken(f"A model called {old['name']!r} already exists. Choose another name, or "
                                "replace it explicitly (the 'Replace the existing model' box, or "
                                "--overwrite/--replace).", old["name"])
            if old is None:
                model_id = self._insert(
                    "INSERT INTO models (name, engine, kind, path, card_json, dp_epsilon, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, engine, kind, str(path), card_json, dp_epsilon, time.time()))
            else:
                model_id = int(old["id"])
                self._run(
                    "UPDATE models SET name=?, engine=?, kind=?, path=?, card_json=?, dp_epsilon=?, "
                    "created_at=? WHERE id=?",
                    (name, engine, kind, str(path), card_json, dp_epsilon, time.time(), model_id))
                self._append(actor, "model_replaced", {
                    "model": name, "model_id": model_id, "kind": kind, "previous_kind": old["kind"],
                    "previous_created_at": old["created_at"], "same_folder": old["path"] == str(path)})
        return model_id

    def model_named(self, name: str) -> str | None:
        """The registered name equal to ``name`` ignoring case, or None when it is free."""
        row = self._one("SELECT name FROM models WHERE lower(name) = lower(?)", (name,))
        return row["name"] if row else None

    def list_models(self, engine: str | None = None, kind: str | None = None) -> list[ModelRecord]:
        """Registered models, oldest first; optionally of one engine ('tabular', 'imaging') or kind."""
        where = [(c, v) for c, v in (("engine", engine), ("kind", kind)) if v]
        sql = "SELECT * FROM models" + (" WHERE " + " AND ".join(f"{c}=?" for c, _ in where) if where else "")
        rows = self._all(sql + " ORDER BY created_at", tuple(v for _, v in where))
        return [
            ModelRecord(int(r["id"]), r["name"], r["engine"], r["path"], json.loads(r["card_json"]),
                        r["dp_epsilon"], r["created_at"], r["kind"])
            for r in rows
        ]

    def model_id(self, name: str) -> int | None:
        row = self._one("SELECT id FROM models WHERE name=?", (name,))
        return int(row["id"]) if row else None

    def delete_model(self, name: str) -> bool:
        """Remove the model's row (not its files); True if it existed. Runs keep their records."""
        with self.transaction("runs", "models"):
            self._run("UPDATE runs SET model_id=NULL WHERE model_id IN (SELECT id FROM models WHERE name=?)",
                      (name,))
            return self._changed("DELETE FROM models WHERE name=?", (name,)) > 0

    # -- audit --------------------------------------------------------------------------------
    def append_event(self, actor: str, action: str, details: dict[str, Any] | None = None) -> int:
        """Append a hash-chained audit event. ``details`` pass through
        :func:`medsyn_core.redaction.redact_details` first (quoted literals and free-text error fields
        are stripped), but callers still must never pass real patient values or identifiers."""
        with self.transaction():
            return self._append(actor, action, details)

    def _append(self, actor: str, action: str, details: dict[str, Any] | None) -> int:
        """Append one event inside the caller's open transaction (which this joins, locking the chain)."""
        from medsyn_core.redaction import redact_details

        details_json = json.dumps(redact_details(details or {}), sort_keys=True, default=str)
        with self.transaction("audit_anchor"):  # PostgreSQL: appenders queue here, as on SQLite
            last = self._one("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1")
            prev = last["hash"] if last else GENESIS_HASH
            event_id = int(last["id"]) + 1 if last else 1
            ts = time.time()
            digest = _event_hash(prev, ts, actor, action, details_json)
            self._run(
                "INSERT INTO audit_events (id, ts, actor, action, details_json, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event_id, ts, actor, action, details_json, prev, digest),
            )
            self._run("UPDATE audit_anchor SET n_events = n_events + 1, last_id = ?, head_hash = ? "
                      "WHERE id = 1", (event_id, digest))
        return event_id

    def audit_events(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM audit_events ORDER BY id")

    def audit_events_since(self, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Events with an id above ``after_id``, oldest first, at most ``limit`` (paging an export)."""
        return self._all("SELECT * FROM audit_events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))

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
        for row in self._all("SELECT * FROM audit_events ORDER BY id"):
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
        anchor = self._one("SELECT * FROM audit_anchor WHERE id = 1")
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
