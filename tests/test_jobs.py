"""Background jobs with real child processes: progress seen from a fresh handle (a page reload),
cancel, one GPU job at a time, and a killed worker marked failed and resumed from its checkpoint."""

import json
import os
import signal
import time

import pytest
from app_helpers import account

from medsyn_core import jobs
from medsyn_core.auth import PermissionDenied, User
from medsyn_core.storage import Store

RITA = User("rita", "researcher")
PRIMES_BELOW_20000 = 2262


@pytest.fixture(autouse=True)
def accounts():
    """The accounts these tests act as (library entry points re-load them from the store)."""
    account("rita", "researcher")
    account("sam", "researcher")
    account("cleo", "clinician")


def _wait(job_id, predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Store() as store:  # a new handle each poll, like a reloaded page
            job = jobs.get_job(store, job_id)
        if predicate(job):
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not reach the expected state: {job}")


@pytest.fixture
def worker():
    w = jobs.JobWorker(interval=0.1).start()
    yield w
    w.stop()


def test_job_runs_in_the_background_and_a_reload_sees_its_progress(worker):
    with Store() as store:
        job_id = jobs.submit(store, RITA, "example-primes",
                             {"limit": 20_000, "chunks": 4, "chunk_delay_s": 0.5})
    mid = _wait(job_id, lambda j: j["status"] == "running" and 0 < j["progress"] < 1)
    assert mid["message"].startswith("chunk ") and "primes_so_far" in mid["payload"]
    done = _wait(job_id, lambda j: j["status"] in jobs.TERMINAL)
    assert done["status"] == "finished" and done["progress"] == 1
    assert done["result"] == {"limit": 20_000, "primes": PRIMES_BELOW_20000, "resumed_at_chunk": 0}
    with Store() as store:
        actions = [e["action"] for e in store.audit_events()]
    assert actions == ["job_submitted", "job_finished"]


def test_running_job_can_be_cancelled(worker):
    with Store() as store:
        job_id = jobs.submit(store, RITA, "example-primes",
                             {"limit": 20_000, "chunks": 20, "chunk_delay_s": 0.2})
    _wait(job_id, lambda j: j["status"] == "running" and j["progress"] > 0)
    with Store() as store:
        with pytest.raises(PermissionDenied):  # another researcher may not cancel rita's job
            jobs.request_cancel(store, User("sam", "researcher"), job_id)
        jobs.request_cancel(store, RITA, job_id)
    job = _wait(job_id, lambda j: j["status"] in jobs.TERMINAL)
    assert job["status"] == "cancelled" and job["progress"] < 1 and job["result"] is None


def test_clinician_cannot_submit_and_queued_job_cancels_at_once():
    with Store() as store:
        with pytest.raises(PermissionDenied, match="clinician role cannot run background jobs"):
            jobs.submit(store, User("cleo", "clinician"), "example-primes", {})
        job_id = jobs.submit(store, RITA, "example-primes", {})
        jobs.request_cancel(store, RITA, job_id)
        assert jobs.get_job(store, job_id)["status"] == "cancelled"
        assert jobs.tick(store) == []  # nothing left to start


def test_one_gpu_job_at_a_time_others_queue():
    jobs.register_job_type("example-primes-gpu", "medsyn_core.job_examples:count_primes",
                           "run_example_job", needs_gpu=True)
    try:
        with Store() as store:
            ids = [jobs.submit(store, RITA, "example-primes-gpu",
                               {"limit": 2000, "chunks": 2, "chunk_delay_s": 0.3}) for _ in range(2)]
            procs = jobs.tick(store)
            assert len(procs) == 1
            assert [jobs.get_job(store, i)["status"] for i in ids] == ["running", "queued"]
            procs[0].wait(60)
            procs = jobs.tick(store)
            assert len(procs) == 1 and jobs.get_job(store, ids[1])["status"] == "running"
            procs[0].wait(60)
            assert [jobs.get_job(store, i)["result"]["primes"] for i in ids] == [303, 303]
    finally:
        del jobs.JOB_TYPES["example-primes-gpu"]


def test_killed_worker_is_marked_failed_and_resumes_from_checkpoint():
    with Store() as store:
        job_id = jobs.submit(store, RITA, "example-primes",
                             {"limit": 20_000, "chunks": 10, "chunk_delay_s": 0.3})
        (proc,) = jobs.tick(store)
    _wait(job_id, lambda j: j["checkpoint"] and j["progress"] >= 0.2)
    os.kill(proc.pid, signal.SIGKILL)  # a real crash: no clean-up code runs
    proc.wait(10)
    with Store() as store:  # "next start-up" of the app
        assert jobs.get_job(store, job_id)["status"] == "running"  # the row alone cannot know
        assert jobs.recover_interrupted(store) == [job_id]
        dead = jobs.get_job(store, job_id)
        assert dead["status"] == "failed" and "worker process died" in dead["error"]
        new_id = jobs.resume(store, RITA, job_id)
        assert jobs.get_job(store, new_id)["resume_from"] == dead["checkpoint"]
        (proc2,) = jobs.tick(store)
        proc2.wait(60)
        resumed = jobs.get_job(store, new_id)
    assert resumed["status"] == "finished"
    assert resumed["result"]["primes"] == PRIMES_BELOW_20000  # same answer as an uninterrupted run
    assert resumed["result"]["resumed_at_chunk"] >= 2


def test_resume_needs_a_failed_job_with_a_checkpoint():
    with Store() as store:
        job_id = jobs.submit(store, RITA, "example-primes", {"limit": 100, "chunks": 1})
        with pytest.raises(ValueError, match="only failed or cancelled jobs"):
            jobs.resume(store, RITA, job_id)
        with pytest.raises(KeyError, match="unknown job kind"):
            jobs.submit(store, RITA, "no-such-kind", {})


def test_failing_job_reports_its_error():
    with Store() as store:
        job_id = jobs.submit(store, RITA, "example-primes", {"limit": 1})
        (proc,) = jobs.tick(store)
        proc.wait(60)
        job = jobs.get_job(store, job_id)
    assert job["status"] == "failed" and "limit must be at least 2" in job["error"]


def test_jobs_cli_lists_shows_cancels_resumes_and_runs_a_worker(capsys):
    from medsyn_cli.main import main

    with Store() as store:
        done_id = jobs.submit(store, RITA, "example-primes", {"limit": 2000, "chunks": 2})
        queued_id = jobs.submit(store, RITA, "example-primes", {"limit": 2000, "chunks": 2})
        jobs.request_cancel(store, RITA, queued_id)
    assert main(["jobs", "worker", "--once"]) == 0  # starts the one queued job and waits for it
    assert "Ran 1 job(s)." in capsys.readouterr().out
    assert main(["jobs", "list"]) == 0
    assert "No queued, running or failed jobs" in capsys.readouterr().out
    assert main(["jobs", "list", "--all"]) == 0
    listing = capsys.readouterr().out
    assert f"{done_id:>5}  example-primes" in listing and "finished" in listing and "cancelled" in listing
    assert main(["jobs", "show", str(done_id)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["result"]["primes"] == 303 and "payload" not in shown

    with Store() as store:  # a job that died after its first checkpoint
        job_id = jobs.submit(store, RITA, "example-primes",
                             {"limit": 20_000, "chunks": 10, "chunk_delay_s": 0.3})
        (proc,) = jobs.tick(store)
    _wait(job_id, lambda j: j["checkpoint"] and j["progress"] >= 0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert main(["jobs", "resume", str(job_id)]) == 0
    assert "resuming job" in capsys.readouterr().out
    assert main(["jobs", "worker", "--once"]) == 0
    with Store() as store:
        resumed = jobs.list_jobs(store, 1)[0]
        events = [(e["actor"], e["action"]) for e in store.audit_events()]
    assert resumed["resumed_job_id"] == job_id and resumed["owner"] == "cli"
    assert resumed["status"] == "finished" and resumed["result"]["primes"] == PRIMES_BELOW_20000
    assert ("cli", "job_submitted") in events

    assert main(["jobs", "show", "999"]) == 2
    assert "There is no job 999" in capsys.readouterr().err
    assert main(["jobs", "resume", str(done_id)]) == 2  # finished jobs are not resumable
    assert "only failed or cancelled jobs" in capsys.readouterr().err
