"""Test helper: a real ``medsyn api`` process (uvicorn) on a free localhost port, with its own home folder
(or a PostgreSQL store), and API tokens for accounts made in that home."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ApiProcess:
    url: str
    home: Path
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # uvicorn shuts down gracefully; the job worker stops with it
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_api(home: Path, env: dict[str, str] | None = None, worker: bool = True,
              timeout: float = 90) -> ApiProcess:
    """Start ``python -m medsyn_cli.main api`` on 127.0.0.1 and wait until ``/ready`` answers 200."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = free_port()
    full_env = {**os.environ, "MEDSYN_HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("MEDSYN_DEVICE", None)
    log = home.parent / f"api-{port}.log"
    cmd = [sys.executable, "-m", "medsyn_cli.main", "api", "--port", str(port), "--log-level", "warning"]
    if not worker:
        cmd.append("--no-worker")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=full_env, stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT))
    server = ApiProcess(f"http://127.0.0.1:{port}", home, proc, log)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"medsyn api exited with {proc.returncode}: {server.log_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"medsyn api did not become ready: {server.log_text()[-3000:]}")


def token_for(username: str, role: str, days: float = 1.0) -> str:
    """An API token for ``username`` (created with ``role`` if missing) in the current MEDSYN_HOME/store."""
    from app_helpers import account

    from medsyn_core import auth
    from medsyn_core.auth import User
    from medsyn_core.storage import Store

    account(username, role)
    with Store() as store:
        secret, _ = auth.create_token(store, User("cli", "admin", operator=True), username, days=days)
    return secret
