"""Accounts, roles and login throttling against the real SQLite store and real argon2 hashes."""

import sqlite3

import pytest

from medsyn_core import auth, settings
from medsyn_core.auth import AuthError, PermissionDenied, User
from medsyn_core.storage import Store

PW = "correct horse battery"


@pytest.fixture
def store_with_admin():
    with Store() as store:
        admin = auth.create_first_admin(store, "admin", PW, via="test")
        yield store, admin


def test_first_admin_only_once_and_no_default_password(monkeypatch):
    with Store() as store:
        assert auth.ensure_admin_from_env(store) is None  # no env, no account: nothing is invented
        assert not auth.has_users(store)
        monkeypatch.setenv(auth.ADMIN_PASSWORD_ENV, PW)
        assert auth.ensure_admin_from_env(store) == User("admin", "admin")
        with pytest.raises(AuthError, match="already exists"):
            auth.create_first_admin(store, "mallory", PW, via="test")
        assert auth.authenticate(store, "admin", PW).role == "admin"


def test_password_is_stored_as_argon2id_only(store_with_admin):
    store, _ = store_with_admin
    conn = sqlite3.connect(settings.database_path())
    (stored,) = conn.execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith("$argon2id$") and PW not in stored
    log = "".join(e["details_json"] + e["actor"] for e in store.audit_events())
    assert PW not in log and "$argon2" not in log


def test_wrong_password_refused_then_throttled_even_for_the_right_one(store_with_admin):
    store, admin = store_with_admin
    auth.create_user(store, admin, "rita", PW, "researcher")
    for _ in range(auth.MAX_FAILURES):
        with pytest.raises(AuthError, match="Wrong username or password"):
            auth.authenticate(store, "rita", "not the password")
    with pytest.raises(AuthError, match="Too many failed logins"):
        auth.authenticate(store, "rita", PW)
    # persisted: a new handle (app restart) still sees the lock
    with Store() as other:
        assert auth.lock_remaining_s(other, "rita") > 25
        # other accounts are unaffected
        assert auth.authenticate(other, "admin", PW).username == "admin"
    # after the lock expires the right password works and resets the counter
    store._conn.execute("UPDATE login_throttle SET locked_until=0")
    assert auth.authenticate(store, "rita", PW) == User("rita", "researcher")
    assert auth.lock_remaining_s(store, "rita") == 0
    actions = [e["action"] for e in store.audit_events()]
    assert actions.count("login_failed") == auth.MAX_FAILURES and "login_refused_locked" in actions


def test_unknown_username_is_refused_and_not_logged_verbatim(store_with_admin):
    store, _ = store_with_admin
    with pytest.raises(AuthError, match="Wrong username or password"):
        auth.authenticate(store, "my-secret-pass", "x")
    last = store.audit_events()[-1]
    assert last["action"] == "login_failed" and last["actor"] == "(unknown user)"
    assert "my-secret-pass" not in last["details_json"]


@pytest.mark.parametrize("action", sorted(auth.PERMISSIONS))
def test_every_action_is_enforced_per_role(action):
    for role in auth.ROLES:
        user = User("someone", role)
        if role in auth.PERMISSIONS[action]:
            assert auth.require(user, action) is user
        else:
            with pytest.raises(PermissionDenied, match=f"Not allowed: the {role} role cannot"):
                auth.require(user, action)
    with pytest.raises(PermissionDenied, match="log in"):
        auth.require(None, action)


def test_role_table_matches_the_issue():
    clinician, researcher = User("c", "clinician"), User("r", "researcher")
    for action in ("train", "upload_real_data", "change_privacy", "evaluate", "delete_model"):
        assert not clinician.can(action)
    for action in ("sample", "export", "view_models"):
        assert clinician.can(action)
    for action in ("train", "upload_real_data", "change_privacy", "evaluate", "export"):
        assert researcher.can(action)
    assert not researcher.can("manage_users") and not researcher.can("view_audit")
    with pytest.raises(KeyError, match="unknown action"):
        auth.require(researcher, "launch_rockets")


def test_user_management_is_admin_only_and_audited(store_with_admin):
    store, admin = store_with_admin
    rita = auth.create_user(store, admin, "rita", PW, "researcher")
    with pytest.raises(PermissionDenied):
        auth.create_user(store, rita, "eve", PW, "admin")
    with pytest.raises(PermissionDenied):
        auth.set_role(store, rita, "rita", "admin")
    auth.set_role(store, admin, "rita", "clinician")
    assert auth.load_user(store, "rita") == User("rita", "clinician")
    with pytest.raises(AuthError, match="last admin"):
        auth.set_role(store, admin, "admin", "researcher")
    auth.set_active(store, admin, "rita", False)
    assert auth.load_user(store, "rita") is None
    with pytest.raises(AuthError, match="Wrong username"):
        auth.authenticate(store, "rita", PW)
    events = [(e["action"], e["details_json"]) for e in store.audit_events()]
    assert ("role_changed", '{"from": "researcher", "to": "clinician", "username": "rita"}') in events
    assert store.verify_audit_chain() is None


def test_bad_account_input_has_actionable_messages(store_with_admin):
    store, admin = store_with_admin
    with pytest.raises(AuthError, match="at least 10 characters"):
        auth.create_user(store, admin, "bob", "short", "clinician")
    with pytest.raises(AuthError, match="Usernames are"):
        auth.create_user(store, admin, "Bob Smith", PW, "clinician")
    with pytest.raises(AuthError, match="Unknown role"):
        auth.create_user(store, admin, "bob", PW, "superuser")


def test_cli_create_admin_once(monkeypatch, capsys):
    import io

    from medsyn_cli.main import main

    monkeypatch.setattr("sys.stdin", io.StringIO(PW + "\n"))
    assert main(["users", "create-admin", "--password-stdin"]) == 0
    assert main(["users", "list"]) == 0
    assert "admin" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(PW + "\n"))
    assert main(["users", "create-admin", "--password-stdin"]) == 2
    assert "already exist" in capsys.readouterr().err
    with Store() as store:
        assert auth.authenticate(store, "admin", PW).role == "admin"


def test_single_sign_on_finds_only_linked_active_accounts_and_logs_no_identity(store_with_admin):
    store, admin = store_with_admin
    rita = auth.create_user(store, admin, "rita", PW, "researcher")
    with pytest.raises(PermissionDenied):
        auth.set_sso_identity(store, rita, "rita", "rita@hospital.example")  # only admins link
    auth.set_sso_identity(store, admin, "rita", "  Rita@Hospital.example ")
    claims = {"sub": "abc123", "email": "rita@hospital.example", "iss": "https://idp.hospital.example"}
    assert auth.authenticate_sso(store, claims) == User("rita", "researcher")
    assert auth.authenticate_sso(store, {"upn": "RITA@hospital.example"}, claim="upn").username == "rita"
    with pytest.raises(AuthError, match="no active MedSyn account is linked"):
        auth.authenticate_sso(store, {"email": "eve@hospital.example"})  # the provider's word alone
    with pytest.raises(AuthError, match="did not send the 'email' claim"):
        auth.authenticate_sso(store, {"sub": "abc123"})
    auth.create_user(store, admin, "sam", PW, "clinician")
    with pytest.raises(AuthError, match="already linked to 'rita'"):
        auth.set_sso_identity(store, admin, "sam", "rita@hospital.example")
    auth.set_active(store, admin, "rita", False)
    with pytest.raises(AuthError, match="no active MedSyn account"):
        auth.authenticate_sso(store, claims)
    auth.set_sso_identity(store, admin, "rita", "")  # unlink
    assert auth.list_users(store, admin)[1]["sso_identity"] is None
    events = store.audit_events()
    assert [(e["actor"], e["action"]) for e in events if e["action"].startswith(("sso", "login"))] == [
        ("admin", "sso_linked"), ("rita", "login"), ("rita", "login"), ("(unknown user)", "login_failed"),
        ("(unknown user)", "login_failed"), ("rita", "login_failed"), ("admin", "sso_unlinked")]
    assert "hospital.example" not in "".join(e["details_json"] for e in events)
