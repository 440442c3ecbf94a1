"""``medsyn jobs list|show|cancel|resume|worker``: the background-job table from a terminal.

For hospital IT on a headless workstation: see what runs and what failed, cancel or resume a job, and
run the job worker without the app (``medsyn jobs worker``; the app runs one itself). Like
``medsyn audit``, the CLI acts as the workstation's operator (whoever can read the database file), with
no MedSyn login; it records its actions in the audit log as ``cli``.
"""

from __future__ import annotations

import argparse
import json
import time

from medsyn_cli.audit import CLI_USER


def _register_engine_jobs() -> None:
    """The engines register their job kinds when their job modules are imported."""
    from medsyn_imaging.training import ldm_job, training_job  # noqa: F401
    from medsyn_tabular import fit_job  # noqa: F401


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def cmd_list(args: argparse.Namespace) -> int:
    from medsyn_core import jobs
    from medsyn_core.storage import Store

    with Store() as store:
        rows = jobs.list_jobs(store, args.limit)
    if not args.all:
        rows = [j for j in rows if j["status"] in ("queued", "running", "failed")]
    if not rows:
        print("No jobs." if args.all else "No queued, running or failed jobs (--all shows every job).")
        return 0
    print(f"{'id':>5}  {'kind':<15} {'owner':<12} {'status':<10} {'progress':>8}  {'created':<19}  message")
    for j in rows:
        message = j["error"] if j["status"] == "failed" else j["message"]
        resumable = "  [resumable]" if j["status"] in ("failed", "cancelled") and j["checkpoint"] else ""
        print(f"{j['id']:>5}  {j['kind']:<15} {j['owner']:<12} {j['status']:<10} {j['progress']:>7.0%}  "
              f"{_when(j['created_at']):<19}  {(message or '')[:70]}{resumable}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from medsyn_core import jobs
    from medsyn_core.storage import Store

    with Store() as store:
        job = jobs.get_job(store, args.job_id)
    if job is None:
        raise ValueError(f"There is no job {args.job_id}; `medsyn jobs list --all` shows them.")
    job = {k: v for k, v in job.items() if k != "payload"}  # the live chart data; large and not useful
    print(json.dumps(job, indent=2, default=str))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from medsyn_core import jobs
    from medsyn_core.storage import Store

    with Store() as store:
        if jobs.get_job(store, args.job_id) is None:
            raise ValueError(f"There is no job {args.job_id}.")
        jobs.request_cancel(store, CLI_USER, args.job_id)
        status = jobs.get_job(store, args.job_id)["status"]
    print(f"Job {args.job_id}: cancel requested ({status}; a running job stops at its next progress step).")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from medsyn_core import jobs
    from medsyn_core.storage import Store

    with Store() as store:
        if jobs.get_job(store, args.job_id) is None:
            raise ValueError(f"There is no job {args.job_id}.")
        jobs.recover_interrupted(store)  # a job whose process died is still 'running' until a worker ticks
        _register_engine_jobs()
        new_id = jobs.resume(store, CLI_USER, args.job_id)
    print(f"Queued job {new_id}, resuming job {args.job_id} from its checkpoint. A worker starts it: the "
          "running app, or `medsyn jobs worker`.")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from medsyn_core import jobs
    from medsyn_core.storage import Store

    if args.once:
        with Store() as store:
            started = jobs.tick(store)
        for proc in started:
            proc.wait()
        print(f"Ran {len(started)} job(s).")
        return 0
    worker = jobs.JobWorker(interval=args.interval).start()
    print("Job worker running (Ctrl+C to stop; running jobs go on in their own processes).")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        worker.stop()
    return 0


def register(subparsers) -> None:
    group = subparsers.add_parser(
        "jobs", help="list, inspect, cancel or resume background jobs; run a worker")
    sub = group.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="queued, running and failed jobs (newest first)")
    p.add_argument("--all", action="store_true", help="also finished and cancelled jobs")
    p.add_argument("--limit", type=int, default=50, help="at most this many jobs (default 50)")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="one job's parameters, result, error and checkpoint as JSON")
    p.add_argument("job_id", type=int)
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("cancel", help="cancel a queued job, or ask a running one to stop")
    p.add_argument("job_id", type=int)
    p.set_defaults(func=cmd_cancel)
    p = sub.add_parser("resume", help="queue a failed or cancelled job again from its last checkpoint")
    p.add_argument("job_id", type=int)
    p.set_defaults(func=cmd_resume)
    p = sub.add_parser("worker", help="start queued jobs without the app (foreground)")
    p.add_argument("--once", action="store_true", help="start what may start, wait for it, and exit")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between scheduling ticks")
    p.set_defaults(func=cmd_worker)
