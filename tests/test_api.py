"""The REST API as a real uvicorn process on localhost, driven by the Python client and plain HTTP: a
researcher trains a DP CTGAN on the heart table as a job, polls it, samples 500 rows under a condition, reads
the ledger and evaluates; a clinician samples and exports but is refused training and real-data upload; a
revoked, expired or disabled account's token is refused; every call is in the audit log and the chain
verifies; the CLI's ``--server`` switch runs the same fit and sample remotely."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import zipfile

import httpx
import pandas as pd
import pytest
from api_server import ROOT, start_api, token_for

from medsyn_client import ApiError, MedSynClient
from medsyn_core import auth
from medsyn_core.storage import Store


@contextlib.contextmanager
def home_of(path):
    old = os.environ.get("MEDSYN_HOME")
    os.environ["MEDSYN_HOME"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MEDSYN_HOME", None)
        else:
            os.environ["MEDSYN_HOME"] = old


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("api") / "home"
    with home_of(home):
        Store().close()
    srv = start_api(home, {"MEDSYN_MAX_CPU_JOBS": "2"})
    yield srv
    srv.stop()


@pytest.fixture
def api(server, medsyn_home, monkeypatch):
    """The running server, with this test's MedSyn home pointed at the server's (same store)."""
    monkeypatch.setenv("MEDSYN_HOME", str(server.home))
    monkeypatch.delenv("MEDSYN_DATABASE_URL", raising=False)
    return server


@pytest.fixture(scope="module")
def trained(server):
    """A researcher's DP CTGAN trained through the API (job polled to the end): what the flow returned."""
    with home_of(server.home):
        token = token_for("rita", "researcher")
    with MedSynClient(server.url, token) as client:
        schema = client.schema("heart_cleveland")
        job = client.train_tabular("heart_cleveland", "heart-dp", epochs=1, batch_size=50, seed=3,
                                   epsilon=1.0)
        seen = []
        done = client.wait(job["job_id"], timeout=600, poll_s=0.5, on_progress=seen.append)
    return {"token": token, "schema": schema, "job": job, "done": done, "seen": seen}


def test_researcher_trains_dp_ctgan_samples_reads_ledger_and_evaluates(api, trained):
    assert trained["job"]["status"] == "queued"
    statuses = [j["status"] for j in trained["seen"]]
    assert statuses[-1] == "finished" and set(statuses) <= {"queued", "running", "finished"}
    assert trained["done"]["result"]["model_name"] == "heart-dp"
    assert "model_path" not in trained["done"]["result"] and "data_path" not in trained["done"]["params"]
    assert {c["name"] for c in trained["schema"]["columns"]} >= {"age", "sex", "num"}
    with MedSynClient(api.url, trained["token"]) as client:
        rows = client.sample("heart-dp", 500, conditions=["sex=1"], seed=7)
        assert len(rows) == 500 and (rows["sex"] == 1).all()
        assert list(rows.columns)[:2] == ["age", "sex"]
        csv = client.sample_bytes("heart-dp", 20, fmt="csv")
        assert len(pd.read_csv(io.BytesIO(csv))) == 20
        ledger = client.ledger("heart-dp")
        assert ledger["differential_privacy"] and 0 < ledger["epsilon"] <= 1.0 + 1e-9
        assert set(ledger["breakdown"]) == {"preprocessing", "training"}
        report = client.evaluate("heart-dp", "heart_cleveland", target="num", n=303)
        assert {s["key"] for s in report["sections"]} >= {"fidelity", "utility", "privacy"}
        html = client.evaluate("heart-dp", "heart_cleveland", target="num", fmt="html", n=303)
        assert html.lstrip().lower().startswith("<!doctype html")
        card = client.model("heart-dp")
        assert card["engine"] == "tabular" and card["privacy"]["epsilon"] == pytest.approx(ledger["epsilon"])


def test_clinician_samples_and_exports_but_cannot_train_or_upload(api, trained):
    token = token_for("cleo", "clinician")
    h = {"Authorization": f"Bearer {token}"}
    ok = httpx.post(f"{api.url}/api/v1/models/heart-dp/sample", headers=h,
                    json={"n": 50, "format": "csv"}, timeout=120)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/csv")
    download = httpx.get(f"{api.url}/api/v1/models/heart-dp/download", headers=h, timeout=60)
    assert download.status_code == 200
    assert "heart-dp/model_card.json" in zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    train = httpx.post(f"{api.url}/api/v1/models/tabular", headers=h, timeout=60,
                       json={"dataset": "heart_cleveland", "name": "cleo-model", "epochs": 1})
    assert train.status_code == 403
    assert train.headers["content-type"] == "application/problem+json"
    assert "clinician role cannot train models" in train.json()["detail"]
    upload = httpx.post(f"{api.url}/api/v1/datasets?filename=t.csv", content=b"a,b\n1,2\n" * 20, timeout=60,
                        headers={**h, "Content-Type": "text/csv"})
    assert upload.status_code == 403 and "cannot upload real patient data" in upload.json()["detail"]
    uploads = api.home / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())  # nothing of the refused upload was kept
    with Store() as store:
        assert store.model_named("cleo-model") is None


def test_revoked_expired_and_disabled_tokens_are_refused(api):
    revoked = token_for("sam", "researcher")
    expiring = token_for("sam", "researcher", days=1.5 / 86400)
    disabled = token_for("dora", "researcher")
    me = f"{api.url}/api/v1/me"
    assert httpx.get(me, headers={"Authorization": f"Bearer {revoked}"}).json()["username"] == "sam"
    with MedSynClient(api.url, revoked) as client:
        client.revoke_token(min(t["id"] for t in client.tokens()))  # the first of sam's two tokens
    refused = httpx.get(me, headers={"Authorization": f"Bearer {revoked}"})
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert refused.headers["www-authenticate"].startswith("Bearer")
    time.sleep(2.0)
    expired = httpx.get(me, headers={"Authorization": f"Bearer {expiring}"})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    with Store() as store:
        auth.set_active(store, auth.User("cli", "admin", operator=True), "dora", False)
    gone = httpx.get(me, headers={"Authorization": f"Bearer {disabled}"})
    assert gone.status_code == 401 and "disabled" in gone.json()["detail"]
    assert httpx.get(me).status_code == 401
    assert httpx.get(me, headers={"Authorization": "Bearer msy_" + "x" * 43}).status_code == 401


def test_every_call_is_audited_and_the_chain_verifies(api, trained):
    token = token_for("vera", "researcher")
    admin = token_for("ada", "admin")
    calls = [("GET", "/api/v1/me"), ("GET", "/api/v1/models"), ("GET", "/api/v1/datasets"),
             ("GET", "/api/v1/jobs"), ("GET", "/api/v1/models/heart-dp/ledger"),
             ("GET", "/api/v1/models/no-such-model"), ("DELETE", "/api/v1/models/heart-dp")]
    statuses = []
    for method, path in calls:
        r = httpx.request(method, api.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200, 200, 200, 404, 403]
    with MedSynClient(api.url, admin) as client:
        check = client.audit_verify()
        events = client.audit_events(0, limit=10_000)["events"]  # (each read is itself audited: one page)
    assert check["ok"], check["message"]
    mine = [json.loads(e["details_json"]) for e in events
            if e["actor"] == "vera" and e["action"] == "api_call"]
    assert [(d["method"], d["status"]) for d in mine] == [(m, s) for (m, _), s in zip(calls, statuses,
                                                                                       strict=True)]
    assert mine[-2]["route"] == "/api/v1/models/{name}"  # the route template, never the raw path
    anonymous = [e for e in events if e["actor"] in ("(anonymous)", "(unknown token)")]
    assert anonymous  # refused calls are audited too (previous test)


def test_cli_server_switch_fits_and_samples_remotely(api, tmp_path):
    import subprocess
    import sys

    token_file = tmp_path / "token"
    token_file.write_text(token_for("rita", "researcher") + "\n")
    table = tmp_path / "cohort.csv"
    pd.read_csv(ROOT / "data/tabular/heart_cleveland.csv").to_csv(table, index=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MEDSYN_HOME": str(tmp_path / "client-home")}
    cli = [sys.executable, "-m", "medsyn_cli.main", "tabular"]
    remote = ["--server", api.url, "--token-file", str(token_file)]
    fit = subprocess.run([*cli, "fit", str(table), "--model", "tvae", "--epochs", "2", "--batch-size", "50",
                          "--out", str(tmp_path / "remote-tvae"), *remote],
                         capture_output=True, text=True, env=env, timeout=600)
    assert fit.returncode == 0, fit.stderr
    assert "Saved tvae model on the server as remote-tvae" in fit.stdout and "DP: off" in fit.stdout
    assert not (tmp_path / "remote-tvae").exists()  # the model stays on the server
    out = tmp_path / "rows.csv"
    sample = subprocess.run([*cli, "sample", "remote-tvae", "-n", "40", "--out", str(out), *remote],
                            capture_output=True, text=True, env=env, timeout=300)
    assert sample.returncode == 0, sample.stderr
    assert len(pd.read_csv(out)) == 40
    refused = subprocess.run([*cli, "sample", "no-such", "-n", "5", "--out", str(tmp_path / "x.csv"),
                              *remote],
                             capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "the server refused: No tabular model" in refused.stderr
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(ApiError) as err:
        MedSynClient(api.url, "msy_" + "y" * 43).me()
    assert err.value.status == 401


def test_images_from_the_bundled_generator_and_job_events(api, trained):
    token = token_for("cleo", "clinician")
    with MedSynClient(api.url, token) as client:
        png = zipfile.ZipFile(io.BytesIO(client.images("pneumoniamnist-stylegan2", n=4, fmt="png", seed=1)))
        names = png.namelist()
        assert sum(n.endswith(".png") for n in names) == 4 and "synthetic/labels.csv" in names
        nifti = zipfile.ZipFile(io.BytesIO(client.images("pneumoniamnist-stylegan2", n=3, fmt="nifti")))
        assert sorted(nifti.namelist()) == ["synthetic.json", "synthetic.nii.gz"]
        assert json.loads(nifti.read("synthetic.json"))["provenance"]["synthetic"] is True
    # the researcher's finished job as server-sent events: one progress event, then the stream ends
    with httpx.stream("GET", f"{api.url}/api/v1/jobs/{trained['job']['job_id']}/events", timeout=60,
                      headers={"Authorization": f"Bearer {trained['token']}"}) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        data = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")]
    assert [d["status"] for d in data] == ["finished"]
    other = httpx.get(f"{api.url}/api/v1/jobs/{trained['job']['job_id']}/events",
                      headers={"Authorization": f"Bearer {token}"})
    assert other.status_code == 403  # a clinician cannot follow the researcher's training job


def test_researcher_trains_an_image_generator_as_a_job_and_samples_dicom(api):
    token = token_for("rita", "researcher")
    with MedSynClient(api.url, token) as client:
        job = client.train_imaging("pneumoniamnist", "api-gen", kimg=0.1, batch=16, channel_base=512)
        done = client.wait(job["job_id"], timeout=600, poll_s=1.0)
        assert done["result"]["model_name"] == "api-gen" and done["params"]["config"]["kimg"] == 0.1
        dicom = zipfile.ZipFile(io.BytesIO(client.images("api-gen", n=2, fmt="dicom", label="pneumonia")))
        assert sum(n.endswith(".dcm") for n in dicom.namelist()) == 2
        with pytest.raises(ApiError) as taken:
            client.train_imaging("pneumoniamnist", "api-gen", kimg=0.1)
        assert taken.value.status == 409 and "already exists" in taken.value.detail
