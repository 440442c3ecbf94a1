"""The store on a real PostgreSQL server (tests/pg_server.py): migrations, the same operations as on SQLite,
the audit chain (verified, and tampering detected) after concurrent writes from several processes, and
job claiming by several workers at once (none claimed twice, the running-job limits held)."""

import json
import subprocess
import sys

import psycopg
import pytest
from app_helpers import account

from medsyn_core import auth, jobs
from medsyn_core.storage import POSTGRES, SCHEMA_VERSION, Store, StoreError


def test_fresh_database_is_migrated_once_to_the_current_version(postgres_url):
    with Store() as store:  # MEDSYN_DATABASE_URL chooses PostgreSQL
        assert store.backend == POSTGRES and store.path is None
        assert store.schema_version == SCHEMA_VERSION
    with Store() as store:  # a second open finds it migrated
        assert store.schema_version == SCHEMA_VERSION
    with psycopg.connect(postgres_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"datasets", "runs", "models", "audit_events", "audit_anchor", "users", "login_throttle", "jobs",
            "api_tokens", "medsyn_schema"} <= tables


def test_newer_schema_is_refused(postgres_url):
    Store().close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE medsyn_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this MedSyn"):
        Store()


def test_concurrent_first_opens_migrate_once(postgres_url):
    code = "from medsyn_core.storage import Store\ns = Store(); s.append_event('p', 'opened', {}); s.close()"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    with Store() as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.check_audit_chain().ok and len(store.audit_events()) == 4


def test_store_operations_match_sqlite(postgres_url):
    with Store() as store:
        ds = store.register_dataset("heart", "tabular", "/data/heart.csv", "bundled", n_rows=303)
        assert store.register_dataset("heart", "tabular", "/data/heart.csv", "bundled", n_rows=300) == ds
        run = store.start_run("tabular-fit", {"epochs": 3}, dataset_id=ds)
        mid = store.register_model("heart-ctgan", "ctgan", "/models/heart-ctgan", {"rows": 303},
                                   dp_epsilon=1.5)
        store.finish_run(run, metrics={"loss": 0.5}, model_id=mid)
        assert store.get_run(run)["metrics"] == {"loss": 0.5}
        assert store.model_named("HEART-CTGAN") == "heart-ctgan"
        with pytest.raises(FileExistsError):
            store.register_model("Heart-CTGAN", "tvae", "/elsewhere", {})
        again = store.register_model("heart-ctgan", "tvae", "/models/v2", {}, replace=True, actor="rita")
        assert again == mid
        [rec] = store.list_models(engine="tabular")
        assert (rec.kind, rec.path, rec.dp_epsilon) == ("tvae", "/models/v2", None)
        assert store.delete_model("heart-ctgan") and store.list_models() == []
        assert [e["action"] for e in store.audit_events()] == ["model_replaced"]
        assert store.check_audit_chain().ok


def test_accounts_login_throttle_and_tokens(postgres_url):
    with Store() as store:
        admin = auth.create_first_admin(store, "ada", "correct horse battery", via="test")
        auth.create_user(store, admin, "rita", "rita-password-1", "researcher")
        assert auth.authenticate(store, "rita", "rita-password-1").role == "researcher"
        for _ in range(auth.MAX_FAILURES):
            with pytest.raises(auth.AuthError, match="Wrong"):
                auth.authenticate(store, "rita", "wrong-password")
        with pytest.raises(auth.AuthError, match="Too many"):
            auth.authenticate(store, "rita", "rita-password-1")
        secret, info = auth.create_token(store, admin, "rita", label="nightly", days=1)
        assert auth.authenticate_token(store, secret).username == "rita"
        auth.revoke_token(store, admin, info["id"])
        with pytest.raises(auth.TokenRefused, match="revoked"):
            auth.authenticate_token(store, secret)
        assert store.check_audit_chain().ok


def test_audit_chain_detects_an_edit(postgres_url):
    with Store() as store:
        for i in range(3):
            store.append_event("tester", f"action-{i}", {"i": i})
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE audit_events SET action='forged' WHERE id=2")
    with Store() as store:
        assert store.verify_audit_chain() == 2


APPENDER = """
import sys
from medsyn_core.storage import Store
with Store() as s:
    for i in range(int(sys.argv[1])):
        s.append_event(f"proc-{sys.argv[2]}", "write", {"i": i})
"""


def test_audit_chain_verifies_after_concurrent_writes_from_several_processes(postgres_url):
    Store().close()  # migrated once, before the race
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, "40", str(k)]) for k in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    with Store() as store:
        events = store.audit_events()
        check = store.check_audit_chain()
    assert check.ok, check.describe()
    assert check.n_events == len(events) == 160
    assert [e["id"] for e in events] == list(range(1, 161))
    assert {e["actor"] for e in events} == {f"proc-{k}" for k in range(4)}


CLAIMER = """
import json, sys, time
from medsyn_core.storage import Store
claimed = []
with Store() as s:
    deadline = time.time() + 60
    while time.time() < deadline:
        job = s.claim_next_job(int(sys.argv[1]), host=sys.argv[2])
        if job is None:
            break
        claimed.append(job)
print(json.dumps(claimed))
"""


def _queue(n: int) -> list[int]:
    rita = account("rita", "researcher")
    with Store() as store:
        return [jobs.submit(store, rita, "example-primes", {"limit": 100 + i}) for i in range(n)]


def _claim_in_parallel(max_cpu_jobs: int, workers: int = 4) -> list[list[int]]:
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(max_cpu_jobs), f"w{k}"],
                              stdout=subprocess.PIPE, text=True) for k in range(workers)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * workers
    return [json.loads(o) for o in outs]


def test_four_workers_claim_twenty_jobs_none_twice(postgres_url):
    queued = _queue(20)
    claims = _claim_in_parallel(max_cpu_jobs=1000)
    everything = [j for c in claims for j in c]
    assert sorted(everything) == sorted(queued)  # each job claimed exactly once
    with Store() as store:
        rows = [store.job(j) for j in queued]
    assert {r["status"] for r in rows} == {"running"}
    assert {r["worker_host"] for r in rows} <= {"w0", "w1", "w2", "w3"}


def test_concurrent_claims_respect_the_running_job_limit(postgres_url):
    _queue(10)
    claims = _claim_in_parallel(max_cpu_jobs=3)
    assert sum(len(c) for c in claims) == 3  # the limit is global: four workers together start three


def test_four_job_workers_run_twenty_jobs_each_once(postgres_url):
    queued = _queue(20)
    env_code = ("import time\nfrom medsyn_core import jobs\nfrom medsyn_core.storage import Store\n"
                "end = time.time() + 150\nprocs = []\n"
                "with Store() as s:\n"
                "    while time.time() < end:\n"
                "        procs = [p for p in procs if p.poll() is None] + jobs.tick(s, 2)\n"
                "        if all(s.job(i)['status'] in jobs.TERMINAL for i in range(1, 21)):\n"
                "            break\n"
                "        time.sleep(0.2)\n"
                "for p in procs:\n    p.wait()\n")
    workers = [subprocess.Popen([sys.executable, "-c", env_code]) for _ in range(4)]
    assert [w.wait(200) for w in workers] == [0, 0, 0, 0]
    with Store() as store:
        rows = [store.job(j) for j in queued]
        finished = [e for e in store.audit_events() if e["action"] == "job_finished"]
        assert store.check_audit_chain().ok
    assert {r["status"] for r in rows} == {"finished"}
    assert sorted(json.loads(e["details_json"])["job"] for e in finished) == sorted(queued)  # once each
    starts = sorted((r["started_at"], r["finished_at"]) for r in rows)
    for t, _ in starts:  # never more than two running at once across the four workers
        assert sum(1 for s, f in starts if s <= t < f) <= 2
