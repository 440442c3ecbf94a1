"""Starting a federation's processes: Flower's SuperLink at the server, a SuperNode at each site.

``medsyn federated server`` (:func:`run_server`):

1. checks the federation file and that the model name is free (before anything starts);
2. starts ``flower-superlink`` with TLS (``--ssl-*``) and node authentication
   (``--enable-supernode-auth``) on one port, runtime dependency installation off (MedSyn is installed);
3. registers each site's public key with ``flwr supernode register`` (only registered sites get in) and
   records which Flower node id is which site pseudonym;
4. submits the MedSyn Flower App with ``flwr run`` and streams its log until the run ends;
5. stops the SuperLink. The ServerApp (:mod:`medsyn_federated.apps`) saved the model on the way.

``medsyn federated client`` (:func:`run_client`) derives the site's node key from its token, then runs
``flower-supernode`` with the CA certificate and that key; the site's data path and settings travel as
Flower node config and never leave the site. It runs until stopped (Ctrl-C); the SuperNode answers every
round the server asks for.

Every process runs in its own process group and is stopped with it; logs go to the work folder
(``$MEDSYN_HOME/federation/<name>/`` at the server, ``$MEDSYN_HOME/federation-sites/<site>/`` at a site).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from medsyn_core import settings as core_settings
from medsyn_core.files import atomic_write_bytes, atomic_write_json, atomic_write_text, private_mkdir
from medsyn_core.names import check_name
from medsyn_federated.config import FederationConfigError, load_config
from medsyn_federated.tokens import check_token, write_private_key

APP_TEMPLATE = Path(__file__).resolve().parent / "flower_app"
CONNECTION = "medsyn"  # the name of the SuperLink connection in the server's private Flower home
SUPERNODE_REFUSED = 305  # Flower's exit code (in the SuperNode's log) when the SuperLink refuses the node
STARTUP_TIMEOUT_S = 120.0


class FederationError(RuntimeError):
    """A federation could not start or run; the message says what to do (no data values)."""

    value_free_message = True


def _bin(name: str) -> str:
    """A Flower command of this Python environment (``flower-superlink``, ``flwr`` …)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def _env(flwr_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FLWR_HOME"] = str(flwr_home)
    # Flower starts its helpers (flower-superexec, flwr-serverapp, flwr-clientapp) by name
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env[core_settings.HOME_ENV] = str(core_settings.home_dir().resolve())
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start(cmd: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 — handed to the child; closed when the child is reaped
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        log.close()


def stop_process(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """Stop ``proc`` and its process group (Flower's helpers: SuperExec, app processes)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=grace)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a SuperNode's local runtime API)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client_address(host: str, port: int) -> str:
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "::", "") else f"{host}:{port}"


def server_work_dir(name: str) -> Path:
    return private_mkdir(core_settings.home_dir() / "federation" / check_name(name))


def site_work_dir(site: str) -> Path:
    return private_mkdir(core_settings.home_dir() / "federation-sites" / check_name(site, what="site"))


def _flwr_config(flwr_home: Path, address: str, ca: Path) -> None:
    private_mkdir(flwr_home)
    atomic_write_text(flwr_home / "config.toml",
                      f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                      f'address = "{address}"\nroot-certificates = "{ca}"\n')


def _register(public_key: str, work: Path, pseudonym: str, env: dict[str, str], deadline: float,
              link: subprocess.Popen) -> int:
    """Register one site's public key with the SuperLink (``flwr supernode register``); its node id."""
    key_file = atomic_write_text(work / "keys" / f"{pseudonym}.pub", public_key + "\n")
    while True:
        out = subprocess.run([_bin("flwr"), "supernode", "register", str(key_file), CONNECTION, "--format",
                              "json"], env=env, capture_output=True, text=True, timeout=120)
        text = out.stdout + out.stderr
        match = re.search(r'"node-id"\s*:\s*(\d+)', text) or re.search(r"SuperNode (\d+) registered", text)
        if out.returncode == 0 and match:
            return int(match.group(1))
        if link.poll() is not None:
            raise FederationError(f"The Flower SuperLink stopped at start (is the port in use?); see "
                                  f"{work / 'superlink.log'}.")
        if time.monotonic() > deadline:
            raise FederationError(f"The SuperLink did not accept site {pseudonym}'s key; see "
                                  f"{work / 'superlink.log'}.")
        time.sleep(1.0)


def _authorise(user, action: str) -> str:
    """Re-load ``user`` and check ``action`` (``medsyn_core.auth.authorise``); the audit actor name."""
    from medsyn_core.auth import authorise
    from medsyn_core.storage import Store

    with Store() as store:
        return authorise(store, user, action).username


def _audit(actor: str, action: str, details: dict) -> None:
    from medsyn_core.storage import Store

    with Store() as store:
        store.append_event(actor, action, details)


def run_server(config_path: str | Path, *, user, replace: bool = False,
               on_line: Callable[[str], None] | None = None, should_stop: Callable[[], bool] | None = None
               ) -> dict:
    """Run one federation to its end (blocking) for ``user`` (an admin); returns the final
    ``status.json`` (state, sites, rounds, model path). Audited: start, end (with the model's name)."""
    from medsyn_core import model_store

    actor = _authorise(user, "run_federation")
    cfg = load_config(config_path)
    if cfg.tls is None:
        raise FederationConfigError("A federation needs TLS (Flower authenticates sites only over TLS): add "
                                    "tls: {ca, cert, key} with the files `medsyn federated certs` writes.")
    model_store.ensure_model_name_free(cfg.name, replace=replace)
    work = server_work_dir(cfg.name)
    for stale in ("status.json", "nodes.json"):
        (work / stale).unlink(missing_ok=True)
    flwr_home = work / "flwr"
    _flwr_config(flwr_home, _client_address(cfg.host, cfg.port), cfg.tls["ca"])
    atomic_write_json(work / "settings.json", {**cfg.to_dict(), "replace": replace, "actor": actor})
    app_dir = work / "app"
    shutil.rmtree(app_dir, ignore_errors=True)
    shutil.copytree(APP_TEMPLATE, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    env = _env(flwr_home)
    _audit(actor, "federation.server.start", {"name": cfg.name, "engine": cfg.engine, "model": cfg.model,
                                               "sites": sorted(cfg.sites), "rounds": cfg.rounds,
                                               "port": cfg.port})
    link = None
    try:
        link = _start([_bin("flower-superlink"), "--ssl-ca-certfile", str(cfg.tls["ca"]),
                       "--ssl-certfile", str(cfg.tls["cert"]), "--ssl-keyfile", str(cfg.tls["key"]),
                       "--enable-supernode-auth", "--host", cfg.host, "--port", str(cfg.port),
                       "--disable-runtime-dependency-installation"],  # state in memory: one run per start
                      work / "superlink.log", env)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        nodes = {}
        for pseudonym, key in sorted(cfg.sites.items()):
            nodes[str(_register(key, work, pseudonym, env, deadline, link))] = pseudonym
        atomic_write_json(work / "nodes.json", nodes)
        _say(on_line, f"SuperLink listening on {cfg.host}:{cfg.port} (TLS); {len(nodes)} site(s) registered: "
                      f"{', '.join(sorted(nodes.values()))}")
        run = subprocess.Popen([_bin("flwr"), "run", str(app_dir), CONNECTION, "--run-config",
                                f'work-dir="{work}"', "--stream"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            with open(work / "run.log", "a", encoding="utf-8") as log:
                for line in run.stdout:
                    log.write(line)
                    log.flush()
                    _say(on_line, line.rstrip("\n"))
                    if should_stop is not None and should_stop():
                        break
        finally:
            stop_process(run, grace=5)
    finally:
        stop_process(link)
    status_file = work / "status.json"
    status = json.loads(status_file.read_text(encoding="utf-8")) if status_file.exists() else {}
    _audit(actor, "federation.server.end", {"name": cfg.name, "state": status.get("state", "stopped"),
                                            "rounds_done": status.get("round", 0)})
    if status.get("state") != "finished":
        reason = status.get("error") or "the run ended before the model was saved"
        raise FederationError(f"The federation did not finish: {reason}. See {work / 'federation.log'} and "
                              f"{work / 'run.log'}.")
    return status


def _say(on_line, text: str) -> None:
    if on_line is not None:
        on_line(text)


def _config_value(value: str, what: str) -> str:
    if any(c in value for c in '"\n\r'):
        raise FederationError(f"The {what} must not contain quotes or line breaks; move the file.")
    return value


def prepare_site_key(site: str, token: str) -> Path:
    """Derive the site's Flower node key from its token and keep it (0600) in the site's work folder,
    so that the token itself is never stored (a background job then needs only the site's name)."""
    check_token(token)
    return write_private_key(token, site_work_dir(site) / "node.key")


def start_client(server: str, data: str | Path, site: str, token: str | None, ca: str | Path, *, user,
                 epsilon: float | None = None, public_rows: bool = False) -> tuple[subprocess.Popen, Path]:
    """Start this site's Flower SuperNode for ``user`` (returns at once): (process, work folder). The
    site's table or images stay here; only what the ServerApp asks for and the site's ClientApp answers
    leaves. ``token`` None: use the key :func:`prepare_site_key` kept. Audited (site, server address,
    data file's name, ε)."""
    actor = _authorise(user, "join_federation")
    site = check_name(site, what="site")
    if token is not None:
        prepare_site_key(site, token)
    elif not (site_work_dir(site) / "node.key").is_file():
        raise FederationError(f"Site {site} has no key yet: give its token.")
    data, ca = Path(data).resolve(), Path(ca).resolve()
    if not data.exists():
        raise FileNotFoundError(f"No data at {data}: give this site's table (CSV/Parquet) or image file.")
    if not ca.is_file():
        raise FileNotFoundError(f"No CA certificate at {ca}: use the ca.crt the federation's admin sent.")
    if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", server):
        raise FederationError(f"--server must be HOST:PORT (got {server!r}), e.g. fed.hospital.example:9092.")
    if epsilon is not None and not 0 < float(epsilon) <= 100:
        raise FederationError("--epsilon must be a positive number (this site's total ε).")
    work = site_work_dir(site)
    key = work / "node.key"
    flwr_home = private_mkdir(work / "flwr")
    node_config = " ".join([
        f'data-path="{_config_value(str(data), "data path")}"', f'site="{site}"',
        f'work-dir="{_config_value(str(work), "home folder")}"',
        f'epsilon="{"" if epsilon is None else float(epsilon)}"',
        f'public-rows="{"true" if public_rows else "false"}"'])
    cmd = [_bin("flower-supernode"), "--superlink", server, "--root-certificates", str(ca),
           "--auth-supernode-private-key", str(key), "--node-config", node_config,
           "--host", "127.0.0.1", "--port", str(free_port())]
    _audit(actor, "federation.site.join", {"site": site, "server": server, "data": data.name,
                                           "epsilon": epsilon, "public_rows": public_rows})
    return _start(cmd, work / "supernode.log", _env(flwr_home)), work


def was_refused(work: Path) -> bool:
    """Whether this site's SuperNode stopped because the SuperLink did not activate it (Flower's exit
    code 305 in its log: an unregistered key, i.e. a wrong or revoked token)."""
    log = work / "supernode.log"
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return f"Exit Code: {SUPERNODE_REFUSED}" in text or "Failed to activate SuperNode" in text


def explain_exit(code: int, work: Path) -> str:
    """A readable reason for a SuperNode that stopped by itself."""
    if code == SUPERNODE_REFUSED or was_refused(work):
        return ("The server refused this site: its token is not registered in this federation (wrong or "
                "revoked token), or the server is not accepting sites. Check the token with the admin.")
    return f"The site's Flower SuperNode stopped (exit code {code}); see {work / 'supernode.log'}."


def run_client(server: str, data: str | Path, site: str, token: str, ca: str | Path, *, user,
               epsilon: float | None = None, public_rows: bool = False,
               on_line: Callable[[str], None] | None = None) -> None:
    """Join a federation and serve it until stopped (Ctrl-C) or refused (raises FederationError)."""
    proc, work = start_client(server, data, site, token, ca, user=user, epsilon=epsilon,
                              public_rows=public_rows)
    _say(on_line, f"Site {site} is joining {server}; log: {work / 'supernode.log'}. Stop with Ctrl-C.")
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        stop_process(proc)
        return
    finally:
        stop_process(proc)
    raise FederationError(explain_exit(code, work))


def write_sites_file(path: str | Path, sites: dict[str, str]) -> Path:
    """Write (or extend) a sites file: pseudonym -> OpenSSH public key (public; no token)."""
    import yaml

    path = Path(path)
    existing = {}
    if path.exists():
        from medsyn_federated.config import read_sites

        existing = read_sites(path)
    clash = sorted(set(existing) & set(sites))
    if clash:
        raise FederationError(f"Site(s) {', '.join(clash)} already have a key in {path.name}; choose another "
                              "pseudonym or remove the old entry (that revokes its token).")
    data = {"sites": {**existing, **sites}}
    return atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=True).encode("utf-8"))

