"""Tamper evidence of the audit log: edits, deletions (middle, first and newest rows) and reordering
are detected and located, by the library and by ``medsyn audit verify``; CSV export."""

import csv
import sqlite3

import pytest
from app_helpers import account

from medsyn_cli.main import main
from medsyn_core import audit, settings
from medsyn_core.auth import PermissionDenied, User
from medsyn_core.storage import Store

ADMIN = User("admin", "admin")


@pytest.fixture(autouse=True)
def accounts():
    """The accounts these tests act as (library entry points re-load them from the store)."""
    account("admin", "admin")
    account("rita", "researcher")


@pytest.fixture
def five_events():
    with Store() as store:
        for i in range(1, 6):
            store.append_event("tester", f"action-{i}", {"i": i})
        assert store.check_audit_chain().ok
    conn = sqlite3.connect(settings.database_path(), isolation_level=None)
    yield conn
    conn.close()


def _check():
    with Store() as store:
        return store.check_audit_chain()


def test_intact_chain_and_cli_verify(five_events, capsys):
    assert _check().ok and _check().n_events == 5
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "intact: 5 events" in out
    head = out.strip().split()[-1]
    assert main(["audit", "verify", "--expect-head", head]) == 0


@pytest.mark.parametrize("row", [1, 3, 5])
def test_edit_is_located(five_events, row):
    five_events.execute("UPDATE audit_events SET details_json='{\"i\": 99}' WHERE id=?", (row,))
    check = _check()
    assert not check.ok and check.first_bad_id == row and "edited" in check.reason


def test_edit_with_recomputed_own_hash_is_caught_at_the_next_row(five_events):
    # a forger who recomputes the edited row's hash still breaks the link to the following row
    from medsyn_core.storage import _event_hash

    r = five_events.execute("SELECT * FROM audit_events WHERE id=2").fetchone()
    new_hash = _event_hash(r[5], r[1], r[2], "forged", r[4])
    five_events.execute("UPDATE audit_events SET action='forged', hash=? WHERE id=2", (new_hash,))
    check = _check()
    assert not check.ok and check.first_bad_id == 3


@pytest.mark.parametrize("row", [1, 3])
def test_deleting_a_row_is_located_at_the_next_one(five_events, row):
    five_events.execute("DELETE FROM audit_events WHERE id=?", (row,))
    check = _check()
    assert not check.ok and check.first_bad_id == row + 1 and "deleted" in check.reason


@pytest.mark.parametrize("n_deleted", [1, 2, 5])
def test_deleting_the_newest_rows_is_detected_by_the_anchor(five_events, n_deleted, capsys):
    five_events.execute("DELETE FROM audit_events WHERE id > ?", (5 - n_deleted,))
    check = _check()
    assert not check.ok and check.first_bad_id == 6 - n_deleted
    assert "newest rows were deleted" in check.reason
    assert main(["audit", "verify"]) == 1
    assert f"BROKEN at event {6 - n_deleted}" in capsys.readouterr().out


def test_deleting_the_anchor_is_detected(five_events):
    five_events.execute("DELETE FROM audit_anchor")
    assert not _check().ok and "anchor" in _check().reason


def test_reordering_rows_is_located(five_events):
    rows = five_events.execute("SELECT ts, actor, action, details_json, prev_hash, hash FROM audit_events "
                               "WHERE id IN (2, 4) ORDER BY id").fetchall()
    five_events.execute("BEGIN")
    for rid, r in zip((4, 2), rows, strict=True):
        five_events.execute("UPDATE audit_events SET ts=?, actor=?, action=?, details_json=?, prev_hash=?, "
                            "hash=? WHERE id=?", (*r, rid))
    five_events.execute("COMMIT")
    check = _check()
    assert not check.ok and check.first_bad_id == 2


def test_rewritten_log_is_caught_only_with_an_external_head(five_events):
    # Honest limit: rebuilding the whole chain and the anchor is undetectable from inside the database;
    # a head hash kept elsewhere catches it.
    head = _check().head_hash
    five_events.execute("DELETE FROM audit_events")
    five_events.execute("UPDATE audit_anchor SET n_events=0, last_id=0, head_hash=?", ("0" * 64,))
    with Store() as store:
        store.append_event("forger", "action-1", {"i": 1})
        assert store.check_audit_chain().ok
        assert not store.check_audit_chain(expect_head=head).ok


def test_export_csv_is_admin_only_and_complete(five_events, tmp_path, capsys):
    with Store() as store:
        with pytest.raises(PermissionDenied):
            audit.export_csv(store, User("rita", "researcher"))
        text = audit.export_csv(store, ADMIN)
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["action"] for r in rows] == [f"action-{i}" for i in range(1, 6)]
    assert set(rows[0]) == set(audit.CSV_COLUMNS)
    out = tmp_path / "audit.csv"
    assert main(["audit", "export", "--out", str(out)]) == 0
    exported = list(csv.DictReader(out.read_text().splitlines()))
    # the library export above was logged too
    assert len(exported) == 6 and exported[-1]["action"] == "audit_exported"
    assert main(["audit", "export", "--out", str(tmp_path / "audit.txt")]) == 2
    assert ".csv" in capsys.readouterr().err
    assert _check().ok
