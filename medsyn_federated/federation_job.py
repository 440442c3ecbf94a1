"""Federations as background jobs (``medsyn_core.jobs``), for the Federation page.

* ``federation-server`` (admins, ``run_federation``): :func:`server_job` runs
  :func:`~medsyn_federated.runner.run_server` for the job's owner; its progress payload is the
  federation's ``status.json`` (sites joined, round, per-round metrics).
* ``federation-site`` (researchers and admins, ``join_federation``): :func:`site_job` runs the site's
  SuperNode until the job is cancelled ("leave the federation") or the server refuses the site. The token
  never enters the job's parameters: the page derives the site's key first
  (:func:`~medsyn_federated.runner.prepare_site_key`).

Cancelling a job stops its Flower processes (their process group).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from medsyn_core import settings
from medsyn_core.jobs import register_job_type

register_job_type("federation-server", "medsyn_federated.federation_job:server_job", "run_federation")
register_job_type("federation-site", "medsyn_federated.federation_job:site_job", "join_federation")
LOG_TAIL_LINES = 15


def _owner(progress):
    from medsyn_core.auth import load_user
    from medsyn_core.storage import Store

    with Store() as store:
        return load_user(store, progress.owner)


def read_status(name: str) -> dict[str, Any] | None:
    """The ``status.json`` of federation ``name`` at this server (None before its first start)."""
    path = settings.home_dir() / "federation" / name / "status.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def list_federations() -> list[str]:
    """Names of the federations this server has run or is running (newest first)."""
    root = settings.home_dir() / "federation"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "status.json").is_file()]
    return [p.name for p in sorted(found, key=lambda p: (p / "status.json").stat().st_mtime, reverse=True)]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def server_job(params: dict[str, Any], progress, resume_from: str | None = None) -> dict[str, Any]:
    """Run a federation server for the job's owner (params: ``config``, ``replace``)."""
    from medsyn_federated import runner
    from medsyn_federated.config import load_config

    name = load_config(params["config"]).name
    last = [0.0]

    def on_line(_line: str) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0:
            return
        last[0] = now
        status = read_status(name) or {}
        rounds = max(1, int(status.get("rounds") or 1))
        progress(min(0.99, float(status.get("round") or 0) / rounds), str(status.get("state", "starting")),
                 {"federation": name})  # raises JobCancelled when cancelled: the finally stops Flower

    status = runner.run_server(params["config"], user=_owner(progress), replace=bool(params.get("replace")),
                               on_line=on_line)
    progress(1.0, "finished", {"federation": name})
    return {"federation": name, "model_path": status.get("model_path"), "rounds": status.get("round")}


def site_job(params: dict[str, Any], progress, resume_from: str | None = None) -> dict[str, Any]:
    """Serve a federation as a site until cancelled (params: ``server``, ``data``, ``site``, ``ca``,
    ``epsilon``, ``public_rows``)."""
    from medsyn_federated import runner

    proc, work = runner.start_client(params["server"], params["data"], params["site"], None, params["ca"],
                                     user=_owner(progress), epsilon=params.get("epsilon"),
                                     public_rows=bool(params.get("public_rows")))
    try:
        while proc.poll() is None:
            progress(0.5, f"site {params['site']} is serving {params['server']}",
                     {"log": log_tail(work / "supernode.log")})
            time.sleep(2.0)
        raise runner.FederationError(runner.explain_exit(proc.returncode, work))
    finally:
        runner.stop_process(proc)
