"""Bounded load test of the REST API, localhost only: N concurrent clients sample R rows each from a saved
model for S seconds while training jobs run; prints request count, errors, throughput and latency
percentiles, and the most training jobs that ran at once (the job limit: one GPU-class job at a time).
The peer in the same run: sampling the same model in-process (no HTTP, no audit, no auth), the floor that the
API's overhead adds to.

    .venv/bin/python bench/api_load.py                       # 20 clients x 60 s x 1,000 rows, SQLite store
    .venv/bin/python bench/api_load.py --clients 5 --seconds 10
    MEDSYN_DATABASE_URL=postgresql://... .venv/bin/python bench/api_load.py   # the PostgreSQL store

It starts its own ``medsyn api`` process on 127.0.0.1 (a free port) with a temporary home folder, and never
sends traffic anywhere else. Exit status 1 if any request failed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run(clients: int = 20, seconds: float = 60.0, rows: int = 1000, train_jobs: int = 3,
        home: Path | None = None) -> dict:
    """The load run; returns its figures (also printed)."""
    import httpx
    from api_server import start_api, token_for

    from medsyn_core.storage import Store
    from medsyn_tabular.synthesizer import TabularSynthesizer

    home = home or Path(tempfile.mkdtemp(prefix="medsyn-load-"))
    os.environ["MEDSYN_HOME"] = str(home)
    Store().close()
    synth = TabularSynthesizer("ctgan", epochs=5, batch_size=100, seed=0)
    synth.fit(ROOT / "data" / "tabular" / "heart_cleveland.csv")
    synth.save(name="load-ctgan")
    local = []
    for _ in range(5):
        t = time.perf_counter()
        synth.sample(rows, seed=1)
        local.append(time.perf_counter() - t)
    token = token_for("loadtest", "researcher")
    server = start_api(home, {"MEDSYN_MAX_CPU_JOBS": "2"})
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    try:
        job_ids = []
        for k in range(train_jobs):  # concurrent training: all queued at once, the limits decide what runs
            r = httpx.post(f"{server.url}/api/v1/models/tabular", headers=headers, timeout=120,
                           json={"dataset": "heart_cleveland", "name": f"load-train-{k}", "model": "tvae",
                                 "epochs": 3, "batch_size": 100})
            r.raise_for_status()
            job_ids.append(r.json()["job_id"])
        deadline = time.monotonic() + seconds

        def client(seed: int) -> None:
            with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
                i = 0
                while time.monotonic() < deadline:
                    t = time.perf_counter()
                    try:
                        r = http.post("/api/v1/models/load-ctgan/sample",
                                      json={"n": rows, "seed": seed * 100_000 + i, "format": "csv"})
                        ok = r.status_code == 200 and r.content.count(b"\n") == rows + 1
                        why = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                    except httpx.HTTPError as exc:
                        ok, why = False, f"{type(exc).__name__}: {exc}"
                    with lock:
                        (latencies if ok else failures).append(time.perf_counter() - t if ok else why)
                    i += 1

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        finish = time.monotonic() + 600
        while time.monotonic() < finish:  # let the training jobs end, to measure their overlap
            states = [httpx.get(f"{server.url}/api/v1/jobs/{j}", headers=headers).json()["status"]
                      for j in job_ids]
            if all(s in ("finished", "failed", "cancelled") for s in states):
                break
            time.sleep(1)
    finally:
        server.stop()
    with Store() as store:
        spans = [(j["started_at"], j["finished_at"] or time.time(), j["status"])
                 for j in (store.job(i) for i in job_ids)]
        chain_ok = store.check_audit_chain().ok
    overlap = max((sum(1 for s, f, _ in spans if s is not None and s <= t < f) for t, _, _ in spans
                   if t is not None), default=0)
    figures = {"clients": clients, "seconds": seconds, "rows": rows,
               "requests": len(latencies) + len(failures), "errors": len(failures),
               "throughput_rps": len(latencies) / wall,
               "p50_s": percentile(latencies, 50) if latencies else None,
               "p95_s": percentile(latencies, 95) if latencies else None,
               "p99_s": percentile(latencies, 99) if latencies else None,
               "max_s": max(latencies) if latencies else None,
               "in_process_median_s": statistics.median(local),
               "training_jobs": [s for _, _, s in spans], "max_training_jobs_at_once": overlap,
               "audit_chain_ok": chain_ok, "first_errors": failures[:3]}
    print(f"API load: {clients} clients x {seconds:g} s, {rows} rows per request (CSV), store "
          f"{'PostgreSQL' if os.environ.get('MEDSYN_DATABASE_URL') else 'SQLite'}")
    print(f"  requests {figures['requests']}, errors {figures['errors']}, "
          f"{figures['throughput_rps']:.1f} req/s")
    if latencies:
        print(f"  latency p50 {figures['p50_s']:.3f} s  p95 {figures['p95_s']:.3f} s  "
              f"p99 {figures['p99_s']:.3f} s  max {figures['max_s']:.3f} s")
    print(f"  peer: in-process sample of {rows} rows, median {figures['in_process_median_s']:.3f} s "
          "(no HTTP, auth or audit)")
    print(f"  training jobs {figures['training_jobs']}, at most {overlap} running at once (limit 1); "
          f"audit chain {'intact' if chain_ok else 'BROKEN'}")
    for why in failures[:3]:
        print(f"  error: {why}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--train-jobs", type=int, default=3)
    args = parser.parse_args(argv)
    figures = run(args.clients, args.seconds, args.rows, args.train_jobs)
    return 0 if figures["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
