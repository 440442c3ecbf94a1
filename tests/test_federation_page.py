"""The Federation page (Streamlit's AppTest): roles decide what it offers, a federation file is checked
before a server job is queued, and a site's token becomes its key without being stored."""

import json

import yaml
from app_helpers import logged_in
from federated_helpers import HEART_SCHEMA

from medsyn_core import jobs
from medsyn_core.storage import Store
from medsyn_federated import certs, runner, tokens


def test_a_clinician_is_refused_and_a_researcher_only_joins():
    at = logged_in("pages/federation.py", "clinician").run()
    assert not at.exception, at.exception
    assert any("cannot join a federation" in e.value for e in at.error)
    at = logged_in("pages/federation.py", "researcher").run()
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == ["Join as a site"]
    assert "Start the server" not in [b.label for b in at.button]


def test_an_admin_checks_a_federation_file_and_queues_the_server_job(tmp_path):
    token = tokens.new_token()
    certs.make_certificates(tmp_path / "certs")
    fed = {"name": "page-fed", "engine": "tabular", "metadata": str(HEART_SCHEMA), "rounds": 2,
           "tls": {"ca": "certs/ca.crt", "cert": "certs/server.pem", "key": "certs/server.key"},
           "sites": {"site-a": tokens.public_key_openssh(token).decode()}}
    (tmp_path / "fed.yaml").write_text(yaml.safe_dump(fed), encoding="utf-8")
    at = logged_in("pages/federation.py", "admin").run()
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == ["Run a federation", "Join as a site"]
    at.text_input[0].set_value(str(tmp_path / "nowhere.yaml")).run()
    assert any("No such file" in e.value for e in at.error)
    at.text_input[0].set_value(str(tmp_path / "fed.yaml")).run()
    assert not at.exception, at.exception
    assert any("page-fed" in m.value and "site-a" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Start the server").click().run()
    assert not at.exception, at.exception
    with Store() as store:
        job = jobs.list_jobs(store)[0]
    assert job["kind"] == "federation-server" and job["owner"] == "test-admin"
    assert json.loads(json.dumps(job["params"]))["config"] == str(tmp_path / "fed.yaml")


def test_joining_keeps_the_sites_key_and_never_the_token(tmp_path):
    token = tokens.new_token()
    files = certs.make_certificates(tmp_path / "certs")
    at = logged_in("pages/federation.py", "researcher").run()
    at.text_input[0].set_value("127.0.0.1:9").run()
    at.text_input[1].set_value("site-a").run()
    at.text_input[2].set_value(token).run()
    # Streamlit's AppTest cannot upload files: the page's library step is called as the page calls it
    key = runner.prepare_site_key("site-a", token)
    assert key.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    with Store() as store:
        params = {"server": "127.0.0.1:9", "site": "site-a", "ca": str(files.ca_cert),
                  "data": str(HEART_SCHEMA)}
        job_id = jobs.submit(store, _researcher(), "federation-site", params)
        job = jobs.get_job(store, job_id)
    assert token not in json.dumps(job, default=str)
    from medsyn_core import settings

    for path in settings.home_dir().rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def _researcher():
    from app_helpers import account

    return account("test-researcher", "researcher")
