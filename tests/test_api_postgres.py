"""Several processes on one PostgreSQL store: two API processes (uvicorn, each with a job worker) and one
app process (app.py under Streamlit's AppTest: its login form and its job worker) share accounts, jobs and the
audit log. Calls go to both APIs at once while the app logs in; queued jobs are claimed by the three workers,
each run exactly once; the audit chain verifies afterwards, through either API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import httpx
from api_server import ROOT, start_api, token_for

from medsyn_core import auth, jobs
from medsyn_core.storage import Store

PW = "correct horse battery"
APP_PROCESS = r"""
import sys, time
from streamlit.testing.v1 import AppTest
from medsyn_core import jobs
from medsyn_core.storage import Store
for _ in range(int(sys.argv[1])):
    at = AppTest.from_file("app.py", default_timeout=120).run()
    at.text_input[0].input("ada")
    at.text_input[1].input(sys.argv[2])
    at.button[0].click().run()
    assert not at.exception and at.title[0].value == "MedSyn", (at.exception, [t.value for t in at.title])
deadline = time.time() + 240  # the app's job worker (started by app.py) keeps working until the queue is done
while time.time() < deadline:
    with Store() as s:
        if all(j["status"] in jobs.TERMINAL for j in s.list_jobs(500)):
            break
    time.sleep(0.5)
print("app done")
"""


def test_two_api_processes_and_the_app_share_one_postgres_store(postgres_url, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MEDSYN_HOME", str(home))
    with Store() as store:
        admin = auth.create_first_admin(store, "ada", PW, via="test")
        assert store.backend == "postgresql"
    tokens = {"rita": token_for("rita", "researcher"), "ada": token_for("ada", "admin")}
    env = {"MEDSYN_MAX_CPU_JOBS": "2"}
    servers = [start_api(home, env), start_api(home, env)]
    try:
        with Store() as store:
            queued = [jobs.submit(store, admin, "example-primes", {"limit": 3000 + i, "chunks": 2})
                      for i in range(12)]
        app = subprocess.Popen([sys.executable, "-c", APP_PROCESS, "3", PW], cwd=str(ROOT),
                               env={**os.environ, "PYTHONPATH": str(ROOT),
                                    "MEDSYN_MAX_CPU_JOBS": "2"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        statuses: list[int] = []
        lock = threading.Lock()

        def hammer(k: int) -> None:
            for i in range(12):
                server = servers[(k + i) % 2]
                r = httpx.get(f"{server.url}/api/v1/models", timeout=60,
                              headers={"Authorization": f"Bearer {tokens['rita']}"})
                with lock:
                    statuses.append(r.status_code)

        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out, _ = app.communicate(timeout=400)
        assert app.returncode == 0 and "app done" in out, out[-3000:]
        assert statuses == [200] * 48
        # the models a researcher lists are the same through either API
        lists = [httpx.get(f"{s.url}/api/v1/models", headers={"Authorization": f"Bearer {tokens['ada']}"})
                 .json() for s in servers]
        assert lists[0] == lists[1]
        checks = [httpx.get(f"{s.url}/api/v1/audit/verify", timeout=60,
                            headers={"Authorization": f"Bearer {tokens['ada']}"}).json() for s in servers]
    finally:
        for s in servers:
            s.stop()
    assert all(c["ok"] for c in checks), checks
    with Store() as store:
        rows = [store.job(j) for j in queued]
        events = store.audit_events()
        assert store.check_audit_chain().ok
    assert {r["status"] for r in rows} == {"finished"}
    finished = [json.loads(e["details_json"])["job"] for e in events if e["action"] == "job_finished"]
    assert sorted(finished) == sorted(queued)  # each job ran exactly once
    spans = [(r["started_at"], r["finished_at"]) for r in rows]
    assert max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans) <= 2  # the global CPU-job limit
    api_calls = [e for e in events if e["action"] == "api_call" and e["actor"] == "rita"]
    assert len(api_calls) >= 48
    assert sum(1 for e in events if e["action"] == "login" and e["actor"] == "ada") == 3  # the app's logins
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
