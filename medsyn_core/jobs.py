"""Background jobs: a job table in the store (SQLite or PostgreSQL), a worker running each job in a process.

A job is a plain function ``fn(params: dict, progress: JobProgress, resume_from: str | None) -> dict``
named by its import path (``"package.module:function"``). :func:`submit` queues it (after the role
check); :class:`JobWorker` (a thread, one per app server) starts queued jobs as child processes
(``python -m medsyn_core.jobs run ID``), at most one GPU job at a time and
``MEDSYN_MAX_CPU_JOBS`` (default 2) others. The job reports progress through ``progress(fraction,
message, payload)``, which also raises :class:`JobCancelled` when someone asked to cancel, and may call
``progress.checkpoint(path)`` after saving a checkpoint. Everything lives in the table, so a page
reload or a new :class:`Store` sees the same state; the page only polls.

A job whose process died (crash, kill, reboot) is marked ``failed`` by :func:`recover_interrupted`
(run at worker start and on each tick); :func:`resume` queues a new job with ``resume_from`` set to
the dead job's last checkpoint.

What is stored about a failure (the job's ``error``, its audit event, ``worker.log``) goes through
:mod:`medsyn_core.redaction`: no cell value. A job whose params name an uploaded file
(``params["upload"]``) releases it when it ends (:func:`medsyn_core.uploads.release`).

Ownership: a user acts on (cancels, resumes, reads the parameters, result and error of) their own
jobs; admins (``manage_jobs``) on all. :func:`visible_jobs` gives non-admins other users' jobs only as
a bare queue entry. Every entry point re-loads the account (``auth.authorise``). Job processes get
the environment without secrets (:func:`child_environment`) and a private umask.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsyn_core import settings
from medsyn_core.auth import ADMIN_PASSWORD_ENV, PermissionDenied, User, allowed, authorise
from medsyn_core.files import FILE_MODE, private_mkdir
from medsyn_core.redaction import public_error, redacted_traceback
from medsyn_core.storage import Store, worker_host

TERMINAL = ("finished", "failed", "cancelled")
MAX_CPU_JOBS_ENV = "MEDSYN_MAX_CPU_JOBS"
#: A job claimed less than this many seconds ago may not have its process id recorded yet.
STARTUP_GRACE_S = 30.0
#: A job running on another host whose heartbeat is older than this (seconds) is marked failed.
STALE_ENV, DEFAULT_STALE_S = "MEDSYN_JOB_STALE_S", 15 * 60.0


@dataclass(frozen=True)
class JobType:
    """A kind of job: the function to run, the action its owner needs, and whether it uses the GPU."""

    kind: str
    target: str
    action: str
    needs_gpu: bool = False


#: kind -> JobType; engines add theirs with :func:`register_job_type`.
JOB_TYPES: dict[str, JobType] = {}


def register_job_type(kind: str, target: str, action: str, needs_gpu: bool = False) -> JobType:
    """Make ``target`` ("module:function") submittable as ``kind`` by users allowed ``action``."""
    JOB_TYPES[kind] = JobType(kind, target, action, needs_gpu)
    return JOB_TYPES[kind]


register_job_type("example-primes", "medsyn_core.job_examples:count_primes", "run_example_job")
# Engines register their own job kinds when their job module is imported (medsyn_tabular.fit_job,
# medsyn_imaging.training.training_job); the app and the CLI import those modules. The core names none.

#: Job targets of folders moved since they were queued (a job row keeps the target it was submitted with).
_MOVED_TARGETS = {"medsyn_imaging.training_job": "medsyn_imaging.training.training_job"}


class JobCancelled(Exception):
    """Raised inside a job by its progress callback once a cancel was requested."""


def job_dir(job_id: int) -> Path:
    """Folder for a job's checkpoints and log (``$MEDSYN_HOME/jobs/<id>``)."""
    return private_mkdir(settings.home_dir() / "jobs" / str(job_id))


def get_job(store: Store, job_id: int) -> dict[str, Any] | None:
    return store.job(job_id)


def list_jobs(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """Every job, newest first, with everything (for the worker and the CLI operator)."""
    return store.list_jobs(limit)


#: What a non-admin sees of another user's job: its place in the queue, nothing of its data.
QUEUE_FIELDS = ("id", "kind", "status", "progress", "needs_gpu", "created_at", "started_at", "finished_at")


def visible_jobs(store: Store, user: User, limit: int = 50) -> list[dict[str, Any]]:
    """The jobs ``user`` may see, newest first: admins all of them in full; others their own in full and
    other users' jobs as queue entries only (:data:`QUEUE_FIELDS`, ``owner`` None, ``mine`` False)."""
    user = authorise(store, user, "run_example_job")
    everything = allowed(user, "manage_jobs")
    out = []
    for job in list_jobs(store, limit):
        if everything or job["owner"] == user.username:
            out.append({**job, "mine": job["owner"] == user.username})
        else:
            out.append({**{k: job[k] for k in QUEUE_FIELDS}, "owner": None, "mine": False})
    return out


def _action_of(kind: str) -> str:
    return JOB_TYPES[kind].action if kind in JOB_TYPES else "run_example_job"


def _authorise_on_job(store: Store, user: User, job_id: int, what: str) -> tuple[User, dict[str, Any]]:
    """The current account and the job, if ``user`` may ``what`` it: its owner (still allowed the job's
    action) or an admin. Raises PermissionDenied (also for a job that does not exist, with the same
    words to non-admins, so job ids of others cannot be probed) or KeyError for an admin."""
    job = get_job(store, job_id)
    user = authorise(store, user, _action_of(job["kind"]) if job else "run_example_job")
    if job is not None and (job["owner"] == user.username or allowed(user, "manage_jobs")):
        return user, job
    if job is None and allowed(user, "manage_jobs"):
        raise KeyError(f"no job {job_id}")
    raise PermissionDenied(f"Not allowed: job {job_id} is not yours; only its owner or an admin may "
                           f"{what} it.")


def job_for(store: Store, user: User, job_id: int) -> dict[str, Any]:
    """Job ``job_id`` with its parameters, result and error, for its owner or an admin."""
    return _authorise_on_job(store, user, job_id, "view")[1]


def submit(store: Store, user: User, kind: str, params: dict[str, Any] | None = None,
           resume_from: str | None = None, resumed_job_id: int | None = None) -> int:
    """Queue a job of a registered ``kind`` for ``user`` (role-checked, audited); returns its id."""
    if kind not in JOB_TYPES:
        raise KeyError(f"unknown job kind {kind!r}; registered: {', '.join(sorted(JOB_TYPES))}")
    jt = JOB_TYPES[kind]
    user = authorise(store, user, jt.action)
    params = params or {}
    job_id = store.insert_job(kind, jt.target, params, user.username, jt.needs_gpu, resume_from,
                              resumed_job_id)
    store.append_event(user.username, "job_submitted",
                       {"job": job_id, "kind": kind, "params": params, "resumed_job": resumed_job_id})
    return job_id


def request_cancel(store: Store, user: User, job_id: int) -> None:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next progress call.
    Only its owner or an admin may."""
    user, _ = _authorise_on_job(store, user, job_id, "cancel")
    cancelled_queued = store.cancel_job(job_id)
    store.append_event(user.username, "job_cancel_requested", {"job": job_id})
    if cancelled_queued:
        _release_upload(store, job_id)


def resume(store: Store, user: User, job_id: int) -> int:
    """Queue a new job that continues failed/cancelled job ``job_id`` from its last checkpoint (its owner
    or an admin; the new job belongs to whoever resumes it)."""
    user, job = _authorise_on_job(store, user, job_id, "resume")
    if job["status"] not in ("failed", "cancelled"):
        raise ValueError(f"job {job_id} is {job['status']}; only failed or cancelled jobs can be resumed")
    if not job["checkpoint"] or not Path(job["checkpoint"]).exists():
        raise ValueError(f"job {job_id} left no checkpoint; submit it again from the start instead")
    upload = job["params"].get("upload")
    if upload and not Path(upload).exists():
        raise ValueError(f"the uploaded file job {job_id} trained on was deleted (its job was cancelled, or "
                         "an admin deleted it); upload it again and start a new job")
    return submit(store, user, job["kind"], job["params"], resume_from=job["checkpoint"],
                  resumed_job_id=job_id)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited child not yet reaped) is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def stale_after_s() -> float:
    """Seconds without a heartbeat after which a job running on *another* host counts as dead."""
    return float(os.environ.get(STALE_ENV, "").strip() or DEFAULT_STALE_S)


def _dead(row: dict[str, Any], host: str, now: float) -> bool:
    """Is the process of running job ``row`` gone? On this host: its pid says so (after the start-up
    grace). On another host (several hosts share a PostgreSQL store) a pid means nothing here: the job
    is dead once its heartbeat is older than :func:`stale_after_s`."""
    if row["worker_host"] not in (None, host):
        return now - (row["heartbeat_at"] or row["started_at"] or 0) > stale_after_s()
    starting = row["worker_pid"] is None and now - (row["started_at"] or 0) < STARTUP_GRACE_S
    return not starting and not _pid_alive(row["worker_pid"])


def recover_interrupted(store: Store) -> list[int]:
    """Mark running jobs whose worker process is gone as failed (resumable); returns their ids."""
    dead = []
    host, now = worker_host(), time.time()
    for row in store.running_jobs():
        if _dead(row, host, now):
            if store.fail_running_job(row["id"], "the worker process died (crash, kill or restart); resume "
                                      "from the last checkpoint if there is one"):
                dead.append(int(row["id"]))
                store.append_event("system", "job_interrupted", {"job": int(row["id"])})
                _release_upload(store, int(row["id"]))
    return dead


def _release_upload(store: Store, job_id: int) -> None:
    """A job has ended: delete its uploaded file unless it is still needed (see medsyn_core.uploads)."""
    from medsyn_core import uploads

    job = get_job(store, job_id)
    if job is not None and job["params"].get(uploads.UPLOAD_PARAM):
        try:
            uploads.release(store, job)
        except OSError:  # the job's outcome stands; the admin page lists what was left
            traceback.print_exc()


def _claim_next(store: Store, max_cpu_jobs: int) -> int | None:
    """Atomically move the oldest startable queued job to 'running'; None if none may start now."""
    return store.claim_next_job(max_cpu_jobs, worker_host())


#: Environment variables never passed to job processes: the first-run admin password and anything
#: that looks like a password, secret or token.
SECRET_ENV = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|API_?KEY", re.IGNORECASE)


def child_environment() -> dict[str, str]:
    """This process's environment without secrets (:data:`SECRET_ENV`, ``MEDSYN_ADMIN_PASSWORD``), plus
    the resolved ``MEDSYN_HOME``: what a job process gets."""
    env = {k: v for k, v in os.environ.items() if k != ADMIN_PASSWORD_ENV and not SECRET_ENV.search(k)}
    env["MEDSYN_HOME"] = str(settings.home_dir())
    return env


def start_job_process(store: Store, job_id: int) -> subprocess.Popen:
    """Run job ``job_id`` in a child Python process; its pid is recorded for crash detection."""
    fd = os.open(job_dir(job_id) / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    log = os.fdopen(fd, "ab")  # handed to the child
    env = child_environment()
    proc = subprocess.Popen([sys.executable, "-m", "medsyn_core.jobs", "run", str(job_id)],
                            stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=str(settings.PROJECT_ROOT))
    log.close()
    store.set_job_worker(job_id, proc.pid)
    return proc


def tick(store: Store, max_cpu_jobs: int | None = None) -> list[subprocess.Popen]:
    """One scheduling step: fail dead jobs, then start what may start. Returns the started processes."""
    if max_cpu_jobs is None:
        max_cpu_jobs = int(os.environ.get(MAX_CPU_JOBS_ENV, "2"))
    recover_interrupted(store)
    started = []
    while (job_id := _claim_next(store, max_cpu_jobs)) is not None:
        started.append(start_job_process(store, job_id))
    return started


class JobWorker:
    """A daemon thread that calls :func:`tick` every ``interval`` seconds (one per app server)."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self._stop = threading.Event()
        self._procs: list[subprocess.Popen] = []
        self._thread = threading.Thread(target=self._loop, name="medsyn-jobs", daemon=True)

    def start(self) -> JobWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        store: Store | None = None
        while not self._stop.is_set():
            try:
                if store is None:
                    store = Store()
                self._procs = [p for p in self._procs if p.poll() is None]  # reap finished children
                self._procs += tick(store)
            except Exception:  # keep serving: log, reopen the store on the next tick; job rows carry errors
                traceback.print_exc()
                if store is not None:
                    store.close()
                    store = None
            self._stop.wait(self.interval)
        if store is not None:
            store.close()


class JobProgress:
    """Handed to a job: ``progress(fraction, message, payload)`` and ``progress.checkpoint(path)``."""

    def __init__(self, store: Store, job_id: int):
        self.store, self.job_id = store, job_id
        self.dir = job_dir(job_id)

    def __call__(self, fraction: float, message: str = "", payload: dict[str, Any] | None = None) -> None:
        if self.store.report_job_progress(self.job_id, max(0.0, min(1.0, float(fraction))), message[:500],
                                          payload or {}):
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def cancelled(self) -> bool:
        return self.store.job_cancel_requested(self.job_id)

    @property
    def owner(self) -> str:
        """The username that submitted this job (the actor of what the job audits)."""
        return self.store.job(self.job_id)["owner"]

    def checkpoint(self, path: str | os.PathLike) -> None:
        """Record that a complete checkpoint was written (atomically) at ``path``."""
        self.store.set_job_checkpoint(self.job_id, str(path))


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(_MOVED_TARGETS.get(module, module)), name)


def run_job(job_id: int) -> str:
    """Run one claimed job in this process; returns its final status (used by the child process)."""
    with Store() as store:
        job = get_job(store, job_id)
        if job is None:
            raise KeyError(f"no job {job_id}")
        store.set_job_worker(job_id, os.getpid(), heartbeat=True)
        progress = JobProgress(store, job_id)
        try:
            result = _resolve(job["target"])(job["params"], progress, job["resume_from"])
            status, error = "finished", None
        except JobCancelled:
            result, status, error = None, "cancelled", None
        except Exception as exc:  # stored and shown to others: redacted (no cell values), also in worker.log
            print(redacted_traceback(exc), file=sys.stderr, flush=True)
            result, status, error = None, "failed", public_error(exc)
        store.finish_job(job_id, status, result, error)
        store.append_event(job["owner"], f"job_{status}", {"job": job_id, "kind": job["kind"],
                                                           "result": result, "error": error})
        _release_upload(store, job_id)
        return status


def _main(argv: list[str]) -> int:
    from medsyn_core.permissions import secure_process

    secure_process()  # the job's checkpoints, models and exports: 0600 files, 0700 folders
    if len(argv) != 2 or argv[0] != "run":
        print("usage: python -m medsyn_core.jobs run JOB_ID", file=sys.stderr)
        return 2
    return 0 if run_job(int(argv[1])) in TERMINAL else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
