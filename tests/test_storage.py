import json
import sqlite3
import subprocess
import sys
import threading

import pytest

from medsyn_core import settings
from medsyn_core.files import atomic_directory, atomic_write_json, atomic_write_text
from medsyn_core.storage import SCHEMA_VERSION, Store, StoreError


def test_home_folder_follows_env(medsyn_home):
    assert settings.home_dir() == medsyn_home.resolve()
    assert medsyn_home.is_dir()
    assert settings.database_path().parent == medsyn_home.resolve()


def test_schema_created_and_versioned(medsyn_home):
    with Store() as store:
        assert store.schema_version == SCHEMA_VERSION >= 1
    conn = sqlite3.connect(settings.database_path())
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"datasets", "runs", "models", "audit_events"} <= tables


def test_newer_schema_is_refused(medsyn_home):
    Store().close()
    conn = sqlite3.connect(settings.database_path())
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this MedSyn"):
        Store()


def test_second_process_sees_what_the_first_wrote(medsyn_home):
    with Store() as store:
        ds = store.register_dataset("heart", "tabular", "/data/heart.csv", "bundled", n_rows=303)
        run = store.start_run("tabular-fit", {"epochs": 3}, dataset_id=ds)
        mid = store.register_model("heart-ctgan", "ctgan", "/models/heart-ctgan", {"rows": 303})
        store.finish_run(run, metrics={"loss": 0.5}, model_id=mid)
        store.append_event("tester", "train", {"model": "heart-ctgan"})
    code = (
        "import json; from medsyn_core.storage import Store\n"
        "s = Store()\n"
        "print(json.dumps({'datasets': [d['name'] for d in s.list_datasets()],"
        " 'models': [m.name for m in s.list_models()], 'run': s.get_run(1)['metrics'],"
        " 'chain': s.verify_audit_chain()}))\n"
        "s.append_event('other-process', 'sample', {})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    assert seen == {"datasets": ["heart"], "models": ["heart-ctgan"], "run": {"loss": 0.5},
                    "chain": None}
    with Store() as store:
        assert [e["actor"] for e in store.audit_events()] == ["tester", "other-process"]
        assert store.verify_audit_chain() is None


def test_concurrent_first_opens_of_a_fresh_database_all_succeed(tmp_path):
    # Regression: the worker thread and a page opening a brand-new file at once got "database is
    # locked" from the switch to WAL, which SQLite reports without waiting on the busy handler.
    for trial in range(15):
        path = tmp_path / f"fresh{trial}.sqlite3"
        errors: list[BaseException] = []

        def open_and_append(path=path, errors=errors):
            try:
                for _ in range(3):
                    with Store(path) as store:
                        store.append_event("rita", "login", {})
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=open_and_append) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with Store(path) as store:
            assert len(store.audit_events()) == 12 and store.check_audit_chain().ok


def test_audit_chain_detects_an_edit(medsyn_home):
    with Store() as store:
        for i in range(3):
            store.append_event("tester", f"action-{i}", {"i": i})
    conn = sqlite3.connect(settings.database_path())
    conn.execute("UPDATE audit_events SET action='forged' WHERE id=2")
    conn.commit()
    conn.close()
    with Store() as store:
        assert store.verify_audit_chain() == 2


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("medsyn_core.files.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, '{"a": 2, "half": ')
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_directory_is_all_or_nothing(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "weights.bin").write_bytes(b"x")
            raise RuntimeError("training crashed")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"x")
    assert (target / "weights.bin").read_bytes() == b"x"
    with pytest.raises(FileExistsError):
        with atomic_directory(target):
            pass
