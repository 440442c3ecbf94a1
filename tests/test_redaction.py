"""No cell values in the audit log, job errors, run records or worker logs (issue 20 item 3). Written as
the attack: real-looking values are planted in a table, the job is made to fail on them, and every place
MedSyn stores something (the database file's bytes, the job error, the job's log, the audit table) is
searched for them. On the old code the schema error quoted the values into all of these."""

import json

import numpy as np
import pandas as pd
import pytest
from app_helpers import finish_job

from medsyn_core import jobs, settings, uploads
from medsyn_core.auth import User
from medsyn_core.redaction import allow_names, public_error, redacted_traceback
from medsyn_core.storage import Store
from medsyn_tabular.data.conditions import ConditionError, parse_conditions
from medsyn_tabular.data.schema import SchemaError, coerce_to_schema, infer_schema
from medsyn_tabular.transformers.table import TableTransformer

RITA = User("rita", "researcher")


@pytest.fixture(autouse=True)
def rita_account(medsyn_home):
    """Library entry points re-load the account, so rita must exist in the test's home."""
    from app_helpers import account

    account("rita", "researcher")
PLANTED = ["Smith John MRN4711", "Flu", "COPD", "Doe Jane 1962-03-04"]


def _table() -> pd.DataFrame:
    """20 rows: a text diagnosis column holding the planted values, and two numeric columns."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({"diagnosis": [PLANTED[i % len(PLANTED)] for i in range(20)],
                         "age": rng.integers(20, 90, 20), "chol": rng.normal(230, 40, 20).round(1)})


def _stored_bytes() -> bytes:
    """Everything the database holds on disk, including pages not yet checkpointed (WAL)."""
    db = settings.database_path()
    files = (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
    return b"".join(p.read_bytes() for p in files if p.exists())


def _assert_nothing_planted(*texts: str | bytes) -> None:
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode()
        for value in PLANTED:
            assert value.encode() not in data, f"{value!r} was stored"


def test_schema_and_condition_errors_name_columns_and_counts_never_values():
    df = _table()
    schema = infer_schema(df)
    schema["diagnosis"].kind = "continuous"
    with pytest.raises(SchemaError) as err:
        coerce_to_schema(df, schema)
    assert str(err.value).startswith(
        "Column 'diagnosis' is declared continuous but 20 cells (4 distinct values) do not hold a number")
    schema["diagnosis"].kind = "datetime"
    with pytest.raises(SchemaError, match="20 cells .* do not hold a date") as err2:
        coerce_to_schema(df, schema)
    schema["diagnosis"].kind, schema["diagnosis"].categories = "categorical", ["Flu"]
    with pytest.raises(SchemaError, match="3 distinct value") as err3:
        TableTransformer().fit(df, schema)
    schema["diagnosis"].categories = None
    encodings = TableTransformer().fit(df, schema).columns
    with pytest.raises(ConditionError, match="condition 1: column 'diagnosis' has no such") as err4:
        parse_conditions(["diagnosis=Smith"], encodings)
    with pytest.raises(ConditionError, match="needs a number") as err5:
        parse_conditions(["age>=Smith"], encodings)
    _assert_nothing_planted(*(str(e.value) for e in (err, err2, err3, err4, err5)), "Smith")


def test_public_error_keeps_declared_names_and_withholds_library_messages():
    try:
        pd.to_datetime(pd.Series(PLANTED), format="mixed")  # names the value it choked on, unquoted
    except ValueError as exc:
        assert PLANTED[0] in str(exc)
        text = public_error(exc)
    assert text.startswith("DateParseError: the message is withheld") and PLANTED[0] not in text
    exc = allow_names(SchemaError(f"Column 'diagnosis' holds ('{PLANTED[0]}', \"{PLANTED[1]}\")"),
                      ["diagnosis"])
    assert public_error(exc) == "SchemaError: Column 'diagnosis' holds ('…', '…')"


def test_redacted_traceback_keeps_the_stack_and_drops_every_message_of_the_chain():
    def parse(cell):
        return float(cell)

    try:
        try:
            parse(PLANTED[0])
        except ValueError as inner:
            raise SchemaError("Column 'diagnosis' could not be read") from inner
    except SchemaError as exc:
        text = redacted_traceback(exc)
    assert "in parse" in text and "return float(cell)" in text  # where it failed
    assert "ValueError: the message is withheld" in text and "SchemaError: Column '…'" in text
    _assert_nothing_planted(text)


def test_audit_details_lose_quoted_literals_and_raw_error_text():
    with Store() as store:
        store.append_event("rita", "job_failed", {
            "error": f"could not convert string to float: '{PLANTED[0]}'",
            "message": f"ValueError: bad value {PLANTED[1]!r}", "note": f"saw \"{PLANTED[2]}\""})
        (event,) = store.audit_events()
        assert store.check_audit_chain().ok
    details = json.loads(event["details_json"])
    assert details == {"error": "(free text withheld)", "message": "ValueError: bad value '…'",
                       "note": "saw '…'"}
    _assert_nothing_planted(_stored_bytes())


def test_planted_values_never_reach_the_job_error_log_audit_or_database(monkeypatch):
    """The reported attack: a kind override on a text column made the job fail quoting its cells."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data_path = uploads.save_upload(_table().to_csv(index=False).encode(), "patients.csv")
    params = {"data_path": str(data_path), "source": "upload-test", "name": "planted", "model": "tvae",
              "epochs": 1, "batch_size": 10, "seed": 0, "privacy": {}, "upload": str(data_path),
              "schema": {"columns": {"diagnosis": {"kind": "continuous"}}}}
    with Store() as store:
        job_id = jobs.submit(store, RITA, "tabular-fit", params)
    job = finish_job(job_id)
    assert job["status"] == "failed"
    assert job["error"].startswith("SchemaError: Column 'diagnosis' is declared continuous but 20 cells")
    log = (jobs.job_dir(job_id) / "worker.log").read_text()
    assert "Traceback" in log and "coerce_to_schema" in log
    with Store() as store:
        run = store.get_run(1)
        events = store.audit_events()
    assert run["status"] == "failed" and "'diagnosis'" in run["metrics"]["error"]
    assert [e["action"] for e in events] == ["job_submitted", "job_failed", "upload_deleted"]
    _assert_nothing_planted(job["error"], log, json.dumps(run), json.dumps(events), _stored_bytes())
    assert not data_path.exists()  # the upload went with the failed job (no checkpoint to resume)


def test_a_library_error_quoting_a_patient_file_name_is_withheld(tmp_path, monkeypatch):
    """An image training job fails inside Pillow on a file named after a patient: the job error, the
    worker log and the audit keep the error type and the stack, not the message."""
    from PIL import Image

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for cls in ("normal", "pneumonia"):
        (tmp_path / "pngs" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((32, 32), 40 * i, np.uint8)).save(tmp_path / "pngs" / cls / f"{i}.png")
    (tmp_path / "pngs" / "normal" / "Smith John MRN4711.png").write_bytes(b"not a png")
    params = {"data": str(tmp_path / "pngs"), "name": "planted-gen", "resolution": 32, "split": "train",
              "config": {"model": "dcgan", "kimg": 0.004, "batch_size": 2}}
    with Store() as store:
        job_id = jobs.submit(store, RITA, "imaging-train", params)
    job = finish_job(job_id)
    assert job["status"] == "failed" and job["error"].endswith(public_error(ValueError()).split(": ", 1)[1])
    log = (jobs.job_dir(job_id) / "worker.log").read_text()
    assert "_from_png_folder" in log
    with Store() as store:
        events = json.dumps(store.audit_events())
    _assert_nothing_planted(job["error"], log, events, _stored_bytes())
