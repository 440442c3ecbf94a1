"""A private PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temporary folder, listening only
on a Unix socket in that folder (no TCP port), trust authentication for the socket (only this machine's
processes that can open the folder reach it).

PostgreSQL refuses to run as root; when the tests run as root (CI), the server runs as the system user
:data:`SERVER_USER`, created here if missing (``useradd --system``). Without the PostgreSQL server binaries
(Debian package ``postgresql``) :func:`find_binaries` returns None and the tests skip with a reason.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

SERVER_USER = "medsyn-pg"
SUPERUSER = "medsyn"


def find_binaries() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists() and Path(folder, "pg_ctl").exists():
            return Path(folder)
    return None


class PostgresServer:
    """One server in its own temporary folder; :meth:`create_database` gives each test a fresh database."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="medsyn-pg-"))
        self.data, self.socket = self.root / "data", self.root / "sock"
        self.as_root = os.geteuid() == 0
        self.socket.mkdir()
        if self.as_root:
            self._ensure_user()
            shutil.chown(self.root, SERVER_USER)
            shutil.chown(self.socket, SERVER_USER)
        os.chmod(self.root, 0o711)  # the server user enters; nobody else lists it

    @staticmethod
    def _ensure_user() -> None:
        if subprocess.run(["id", "-u", SERVER_USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            SERVER_USER], check=True, capture_output=True)

    def _as_server(self, *argv: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        out = self._as_server("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                              "--no-sync", "-E", "UTF8", "--locale=C")
        if out.returncode:
            raise RuntimeError(f"initdb failed: {out.stderr[-2000:]}")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{self.socket}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "max_connections = 200\nshared_buffers = 32MB\n")
        out = self._as_server("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                              "-t", "60", "start")
        if out.returncode:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {out.stderr[-1000:]} {log}")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1].split("?")[0]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        self._as_server("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
