"""Real uploads at rest (issue 12 item 9): private while a job needs them, deleted when it ends unless
kept, listed and purged by an admin, every deletion audited with a hash prefix and never the file name.
On the old code the uploaded CSV stayed in $MEDSYN_HOME/uploads, world-readable, for ever."""

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
from app_helpers import finish_job, logged_in

from medsyn_cli.main import main
from medsyn_core import jobs, settings, uploads
from medsyn_core.auth import PermissionDenied, User
from medsyn_core.storage import Store

ROOT = Path(__file__).resolve().parents[1]
RITA = User("rita", "researcher")


@pytest.fixture(autouse=True)
def rita_account(medsyn_home):
    """Library entry points re-load the account, so rita must exist in the test's home."""
    from app_helpers import account

    account("rita", "researcher")
ADMIN = User("ada", "admin")
#: The upload's own file name and an identifier column: neither may be stored or outlive the job.
FILE_NAME = "Smith_John_MRN4711_export.csv"
PATIENT = "Smith John MRN4711"


def _patient_csv() -> bytes:
    """The bundled heart table with a patient-name column (which PHI handling drops before training)."""
    lines = (ROOT / "data/tabular/heart_cleveland.csv").read_text().splitlines()
    rows = [f"patient_name,{lines[0]}"] + [f"{PATIENT} {i},{line}" for i, line in enumerate(lines[1:])]
    return ("\n".join(rows) + "\n").encode()


def _files_holding(data: bytes) -> list[Path]:
    home = settings.home_dir()
    return [p for p in home.rglob("*") if p.is_file() and data in p.read_bytes()]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _train_upload_on_page(keep: bool) -> tuple[dict, Path]:
    at = logged_in("pages/tabular.py", "researcher").run()
    at.radio[1].set_value("Upload a file").run()
    assert any("deleted as soon as the training job ends" in c.value for c in at.caption)
    at.get("file_uploader")[0].set_value((FILE_NAME, _patient_csv(), "text/csv")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    if keep:
        next(c for c in at.checkbox if c.label == "Keep the uploaded file after training").check()
    at.number_input[0].set_value(1)  # epochs
    at.number_input[1].set_value(100)  # batch size
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job_id = at.session_state["tabular_job_id"]
    with Store() as store:
        upload = Path(jobs.get_job(store, job_id)["params"]["upload"])
    # while the job waits for its worker, the only copy is private to the service account
    assert _files_holding(PATIENT.encode()) == [upload]
    assert _mode(upload) == 0o600 and _mode(upload.parent) == 0o700
    assert FILE_NAME not in upload.name and upload.parent == settings.home_dir() / "uploads"
    job = finish_job(job_id)
    assert job["status"] == "finished", job["error"]
    at.run()
    return job, upload


def _stored_text() -> bytes:
    db = settings.database_path()
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_page_upload_is_private_and_gone_when_the_job_ends():
    job, upload = _train_upload_on_page(keep=False)
    assert not upload.exists() and _files_holding(PATIENT.encode()) == []
    with Store() as store:
        events = store.audit_events()
        (dataset,) = store.list_datasets("tabular")
    deleted = [json.loads(e["details_json"]) for e in events if e["action"] == "upload_deleted"]
    assert [(d["file_sha256_prefix"], d["why"]) for d in deleted] == [
        (uploads.sha_prefix(upload), f"job {job['id']} finished")]
    assert dataset["name"] == f"upload-{uploads.sha_prefix(upload)}"  # not the uploaded file's name
    assert FILE_NAME.encode() not in _stored_text() and b"Smith_John" not in _stored_text()


def test_kept_upload_is_listed_and_purged_by_the_cli_with_an_audit_record(capsys):
    job, upload = _train_upload_on_page(keep=True)
    assert upload.exists() and _mode(upload) == 0o600
    with Store() as store:
        with pytest.raises(PermissionDenied):
            uploads.list_uploads(store, RITA)
        (entry,) = uploads.list_uploads(store, ADMIN)
    assert entry.jobs == [job["id"]] and entry.owners == ["test-researcher"]
    assert entry.state.startswith("kept at the user's request") and not entry.in_use
    assert main(["uploads", "list"]) == 0
    assert upload.name in capsys.readouterr().out
    assert main(["uploads", "purge", "--older-than", "1"]) == 0  # a fresh upload is not older than a day
    assert upload.exists() and "Deleted 0 upload(s)" in capsys.readouterr().out
    assert main(["uploads", "purge"]) == 0
    assert not upload.exists() and "Deleted 1 upload(s)" in capsys.readouterr().out
    with Store() as store:
        (event,) = [e for e in store.audit_events() if e["action"] == "upload_deleted"]
    assert event["actor"] == "cli"
    assert json.loads(event["details_json"])["file_sha256_prefix"] == uploads.sha_prefix(upload)
    assert FILE_NAME.encode() not in _stored_text()


def test_admin_deletes_a_kept_upload_on_the_data_at_rest_page():
    path = uploads.save_upload(b"a,b\n1,2\n", "x.csv")
    with Store() as store:
        jobs.submit(store, RITA, "example-primes", {"limit": 100, "upload": str(path), "keep_upload": True})
    clinician = logged_in("pages/data_at_rest.py", "clinician").run()
    assert "cannot manage uploaded real data" in clinician.error[0].value and not clinician.dataframe
    at = logged_in("pages/data_at_rest.py", "admin").run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value["state"][0] == "in use by job 1 (queued)"
    assert not any(b.label == "Delete this upload" for b in at.button)  # a queued job reads it
    with Store() as store:
        jobs.tick(store)[0].wait(60)
    at.run()
    assert at.dataframe[0].value["state"][0].startswith("kept at the user's request")
    next(b for b in at.button if b.label == "Delete this upload").click().run()
    assert not at.exception and not path.exists()
    assert any("Deleted" in s.value for s in at.success)
    assert any("No uploaded file" in i.value for i in at.info)
    with Store() as store:
        assert [e["actor"] for e in store.audit_events() if e["action"] == "upload_deleted"] == ["test-admin"]


def _wait(job_id, predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Store() as store:
            job = jobs.get_job(store, job_id)
        if predicate(job):
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not reach the expected state: {job}")


def test_cancelled_job_deletes_its_upload_and_cannot_be_resumed_without_it():
    queued = uploads.save_upload(b"a,b\n1,2\n", "q.csv")
    running = uploads.save_upload(b"a,b\n3,4\n", "r.csv")
    with Store() as store:
        first = jobs.submit(store, RITA, "example-primes", {"limit": 100, "upload": str(queued)})
        jobs.request_cancel(store, RITA, first)  # cancelled before it started: released at once
        assert not queued.exists()
        job_id = jobs.submit(store, RITA, "example-primes", {"limit": 20_000, "chunks": 20,
                                                             "chunk_delay_s": 0.2, "upload": str(running)})
        (proc,) = jobs.tick(store)
    _wait(job_id, lambda j: j["checkpoint"] is not None)
    with Store() as store:
        jobs.request_cancel(store, RITA, job_id)
    proc.wait(60)
    with Store() as store:
        assert jobs.get_job(store, job_id)["status"] == "cancelled" and not running.exists()
        with pytest.raises(ValueError, match="uploaded file job .* was deleted"):
            jobs.resume(store, RITA, job_id)
        whys = [json.loads(e["details_json"])["why"] for e in store.audit_events()
                if e["action"] == "upload_deleted"]
    assert whys == [f"job {first} cancelled", f"job {job_id} cancelled"]


def test_a_crashed_job_keeps_its_upload_until_the_resumed_job_ends():
    path = uploads.save_upload(b"a,b\n1,2\n", "t.csv")
    with Store() as store:
        job_id = jobs.submit(store, RITA, "example-primes", {"limit": 20_000, "chunks": 10,
                                                             "chunk_delay_s": 0.3, "upload": str(path)})
        (proc,) = jobs.tick(store)
    _wait(job_id, lambda j: j["checkpoint"] and j["progress"] >= 0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with Store() as store:
        assert jobs.recover_interrupted(store) == [job_id]
        assert path.exists()  # the failed job can be resumed: its data stays
        (entry,) = uploads.list_uploads(store, ADMIN)
        assert entry.state == f"kept so that failed job {job_id} can be resumed"
        new_id = jobs.resume(store, RITA, job_id)
        (proc2,) = jobs.tick(store)
        proc2.wait(60)
        assert jobs.get_job(store, new_id)["status"] == "finished"
        assert not path.exists() and uploads.list_uploads(store, ADMIN) == []
