"""Set-up shared by the federated tests: certificates, site tokens, a federation file, and the server and
site processes (real Flower SuperLink and SuperNodes on 127.0.0.1)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import yaml

from medsyn_cli.audit import CLI_USER
from medsyn_federated import certs, runner, tokens

HEART_SCHEMA = Path(__file__).resolve().parent / "data" / "federated" / "heart_schema.yaml"
TINY_CTGAN = {"embedding_dim": 16, "generator_dim": [32, 32], "discriminator_dim": [32, 32]}


class Federation:
    """One federation under ``root``: certificates, a token per site, ``fed.yaml``, and its processes."""

    def __init__(self, root: Path, sites: list[str], **settings: Any):
        self.root = root
        self.files = certs.make_certificates(root / "certs", hosts=["127.0.0.1", "localhost"])
        self.tokens = {s: tokens.new_token() for s in sites}
        runner.write_sites_file(root / "certs" / "sites.yaml",
                                {s: tokens.public_key_openssh(t).decode() for s, t in self.tokens.items()})
        self.port = runner.free_port()
        self.settings = {"name": "fed-test", "host": "127.0.0.1", "port": self.port, "min_sites": len(sites),
                         "join_timeout_s": 240, "round_timeout_s": 240, "evaluate": False,
                         "tls": {"ca": "certs/ca.crt", "cert": "certs/server.pem", "key": "certs/server.key"},
                         "sites": "certs/sites.yaml", **settings}
        (root / "fed.yaml").write_text(yaml.safe_dump(self.settings, sort_keys=False), encoding="utf-8")
        self.outcome: dict[str, Any] = {}
        self.clients: dict[str, Any] = {}
        self.thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def work(self) -> Path:
        return runner.server_work_dir(self.settings["name"])

    def start_server(self) -> None:
        def serve() -> None:
            try:
                self.outcome["status"] = runner.run_server(self.root / "fed.yaml", user=CLI_USER)
            except Exception as exc:  # noqa: BLE001 — checked by the test
                self.outcome["error"] = exc

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 180
        while not (self.work / "nodes.json").exists():  # sites are registered: they may join
            assert self.thread.is_alive(), self.outcome
            assert time.monotonic() < deadline, "the SuperLink did not start"
            time.sleep(0.3)

    def start_site(self, site: str, data: Path, token: str | None = None, **kwargs: Any):
        proc, work = runner.start_client(self.address, data, site, token or self.tokens[site],
                                         self.files.ca_cert, user=CLI_USER, **kwargs)
        self.clients[site] = proc
        return proc, work

    def wait(self, timeout: float = 900) -> dict:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the federation did not end in time"
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["status"]

    def log(self) -> str:
        path = self.work / "federation.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def stop(self) -> None:
        for proc in self.clients.values():
            runner.stop_process(proc)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
