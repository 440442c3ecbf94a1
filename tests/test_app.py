"""The Streamlit app with AppTest: login gate, every page renders for a permitted role, and pages refuse
roles that may not use them (server side, not just hidden in the menu)."""

import time
from pathlib import Path

import pytest
from app_helpers import ROOT, logged_in
from streamlit.testing.v1 import AppTest

from medsyn_app.session import SESSION_KEY
from medsyn_core import auth
from medsyn_core.storage import Store

PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))
PW = "correct horse battery"


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


def _login(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    return at.button[0].click().run()


def test_first_run_asks_for_an_admin_then_login_form_works():
    at = _app().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "MedSyn — first run"
    at.text_input[1].input(PW)
    at.text_input[2].input(PW)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "MedSyn"
    assert any("admin" in m.value and "Device:" not in m.value for m in at.sidebar.markdown)
    # a new browser session: wrong password refused, right one works. (Logout is a sidebar button in
    # app.py; AppTest reruns only the page script after the first run, so the browser test covers it.)
    at = _app().run()
    assert at.title[0].value == "MedSyn — log in"
    _login(at, "admin", "wrong password!")
    assert "Wrong username or password" in at.error[0].value
    _login(at, "admin", PW)
    assert at.title[0].value == "MedSyn"
    with Store() as store:
        actions = [e["action"] for e in store.audit_events()]
    assert actions == ["user_created", "login_failed", "login"]


def test_admin_from_environment_and_no_login_no_content(monkeypatch):
    monkeypatch.setenv(auth.ADMIN_PASSWORD_ENV, PW)
    at = _app().run()
    assert at.title[0].value == "MedSyn — log in"  # the admin exists; nobody is logged in
    assert not any("Bundled datasets" in s.value for s in at.subheader)
    _login(at, "admin", PW)
    assert at.title[0].value == "MedSyn"


def test_home_page_renders_with_device_in_sidebar():
    at = logged_in("app.py", "researcher").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "MedSyn"
    assert any("Device:" in m.value for m in at.sidebar.markdown)
    assert any("test-researcher" in m.value and "researcher" in m.value for m in at.sidebar.markdown)


def test_idle_session_times_out():
    at = logged_in("app.py", "researcher")
    at.session_state[SESSION_KEY] = {"username": "test-researcher",
                                     "last_seen": time.time() - auth.session_timeout_s() - 1}
    at.run()
    assert at.title[0].value == "MedSyn — log in"
    assert "expired" in at.info[0].value


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_for_admin(page):
    at = logged_in("app.py", "admin").run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.title, f"{page} has no title"
    assert not at.error, [e.value for e in at.error]


def test_clinician_is_refused_training_and_admin_pages_server_side():
    for page, text in [("pages/evaluation.py", "clinician role cannot run evaluations"),
                       ("pages/audit.py", "clinician role cannot view the audit log"),
                       ("pages/users.py", "clinician role cannot manage users"),
                       ("pages/jobs.py", "clinician role cannot run background jobs")]:
        at = logged_in(page, "clinician").run()  # run the page directly, bypassing the menu
        assert not at.exception, at.exception
        assert text in at.error[0].value, page
    at = logged_in("pages/tabular.py", "clinician").run()
    assert "Not allowed: the clinician role cannot train models" in at.info[0].value
    assert not any(b.label == "Train" for b in at.button) and not at.get("file_uploader")
    at = logged_in("pages/tabular.py", "researcher").run()
    assert not at.error


def test_menu_shows_only_permitted_pages():
    # AppTest cannot list the navigation menu; check the same filter app.py applies
    source = (ROOT / "app.py").read_text()
    for page in PAGES:
        assert page in source, f"{page} is not routed in app.py"
    assert not auth.allowed(auth.User("c", "clinician"), "view_audit")


def test_not_logged_in_page_shows_nothing():
    at = AppTest.from_file(str(ROOT / "pages/model_store.py"), default_timeout=60).run()
    assert "Not logged in" in at.warning[0].value and not at.dataframe


def test_admin_creates_user_and_changes_role_on_users_page():
    at = logged_in("pages/users.py", "admin").run()
    at.text_input[0].input("rita")
    at.text_input[1].input(PW)
    at.selectbox[0].set_value("researcher")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "Created rita (researcher)." in at.success[0].value
    at.selectbox[1].set_value("rita").run()
    at.selectbox[2].set_value("clinician").run()
    next(b for b in at.button if b.label == "Change role").click().run()
    with Store() as store:
        assert auth.load_user(store, "rita") == auth.User("rita", "clinician")
        assert [e["action"] for e in store.audit_events()][-2:] == ["user_created", "role_changed"]


def test_a_refused_new_account_keeps_everything_typed_in_the_form():
    """Issue 19: a refused account (short password) used to clear every field and reset the role to
    clinician, so the next submit created the wrong thing."""
    at = logged_in("pages/users.py", "admin").run()
    at.text_input(key="new_username").input("rita")
    at.text_input(key="new_password").input("short")
    at.selectbox(key="new_role").set_value("researcher")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "at least 10 characters" in at.error[0].value
    assert at.text_input(key="new_username").value == "rita"
    assert at.selectbox(key="new_role").value == "researcher"
    at.text_input(key="new_password").input(PW)
    at.button[0].click().run()
    assert "Created rita (researcher)." in at.success[0].value
    assert at.text_input(key="new_username").value == ""  # emptied after success only
    with Store() as store:
        assert auth.load_user(store, "rita") == auth.User("rita", "researcher")


SSO_SECRETS = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
               "client_id": "medsyn", "client_secret": "s",
               "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}


def test_single_sign_on_button_only_when_configured_and_admin_links_accounts():
    with Store() as store:
        auth.create_first_admin(store, "admin", PW, via="test")
    at = _app().run()
    assert not at.exception and not [b for b in at.button if "single sign-on" in b.label]
    at = _app()
    at.secrets["auth"] = SSO_SECRETS
    at.run()
    assert not at.exception, at.exception
    assert [b.label for b in at.button][0] == "Log in with single sign-on"
    broken = _app()  # an [auth] section without the provider's keys: a readable error, not a traceback
    broken.secrets["auth"] = {"redirect_uri": SSO_SECRETS["redirect_uri"]}
    broken.run().button[0].click().run()
    assert not broken.exception and "Single sign-on is not set up correctly" in broken.error[0].value
    at.text_input[0].input("admin")
    at.text_input[1].input(PW)
    next(b for b in at.button if b.label == "Log in").click().run()
    assert at.title[0].value == "MedSyn"  # local accounts still work beside it

    users = logged_in("pages/users.py", "admin")
    users.secrets["auth"] = SSO_SECRETS
    users.run()
    assert any("Single sign-on is on" in c.value for c in users.caption)
    users.text_input[0].input("rita")
    users.text_input[1].input(PW)
    users.text_input[2].input("Rita@Hospital.example")
    users.button[0].click().run()
    assert not users.exception, users.exception
    with Store() as store:
        rita = next(a for a in auth.list_users(store, auth.User("admin", "admin")) if a["username"] == "rita")
        assert rita["sso_identity"] == "rita@hospital.example"
        assert auth.authenticate_sso(store, {"email": "rita@hospital.example"}).username == "rita"
    users.selectbox[1].set_value("rita").run()
    users.text_input[3].input("rita.k@hospital.example").run()  # re-link an existing account
    next(b for b in users.button if b.label == "Save single sign-on link").click().run()
    next(b for b in users.button if b.label == "Disable account").click().run()
    assert not users.exception and not users.error
    with Store() as store:
        with pytest.raises(auth.AuthError, match="no active MedSyn account"):
            auth.authenticate_sso(store, {"email": "rita.k@hospital.example"})
        assert [e["action"] for e in store.audit_events()][-3:] == ["sso_linked", "user_disabled",
                                                                    "login_failed"]


def test_audit_page_verifies_and_exports():
    at = logged_in("pages/audit.py", "admin").run()
    with Store() as store:
        store.append_event("test-admin", "sample", {"rows": 10})
    next(b for b in at.button if b.label == "Verify the chain").click().run()
    assert "Audit chain intact" in at.success[0].value
    next(b for b in at.button if b.label == "Prepare CSV export").click().run()
    assert not at.exception, at.exception
    assert "sample" in at.session_state["audit_csv"]


def test_model_store_page_lists_cards_and_deletes_with_confirmation(tmp_path):
    from medsyn_core import settings
    from medsyn_core.files import atomic_write_json

    folder = settings.models_dir() / "heart-tvae"
    atomic_write_json(folder / "model_card.json", {
        "card_format": 2, "engine": "tabular", "kind": "tvae", "data_source": "heart",
        "parameters": {"epochs": 2}, "metrics": {"final loss_g": 0.4},
        "differential_privacy": {"enabled": True, "epsilon_total": 3.0, "delta_total": 1e-5,
                                 "unit": "one row"}})
    with Store() as store:
        store.register_model("heart-tvae", "tvae", folder, {"rows": 303}, dp_epsilon=3.0)
    at = logged_in("pages/model_store.py", "admin").run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric} == {"ε spent": "3", "δ": "1e-05"}
    assert any("Protected unit: one row" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Prepare zip download").click().run()
    assert at.session_state["model_zip"][0] == "heart-tvae"
    delete = next(b for b in at.button if b.label == "Delete model")
    assert delete.disabled
    at.text_input[0].input("heart-tvae").run()
    next(b for b in at.button if b.label == "Delete model").click().run()
    assert not at.exception, at.exception
    assert not Path(folder).exists()
    with Store() as store:
        assert store.list_models() == []
        assert [e["action"] for e in store.audit_events()][-2:] == ["model_downloaded", "model_deleted"]


def test_only_roles_allowed_to_upload_real_data_get_the_imaging_upload():
    at = logged_in("pages/imaging.py", "clinician").run()
    assert at.radio[0].options == ["Bundled dataset"]
    at = logged_in("pages/imaging.py", "researcher").run()
    assert at.radio[0].options == ["Bundled dataset", "Upload files"]
    at.radio[0].set_value("Upload files").run()
    assert not at.exception, at.exception


def test_admin_creates_and_revokes_an_api_token_on_users_page():
    at = logged_in("pages/users.py", "admin").run()
    at.selectbox[1].set_value("test-admin").run()
    next(t for t in at.text_input if t.label.startswith("What the token is for")).input("nightly")
    next(b for b in at.button if b.label.startswith("Create a token for")).click().run()
    assert not at.exception, at.exception
    secret = at.code[0].value
    with Store() as store:
        assert auth.authenticate_token(store, secret).username == "test-admin"
    next(b for b in at.button if b.label == "Revoke token").click().run()
    assert not at.exception, at.exception
    with Store() as store:
        with pytest.raises(auth.TokenRefused, match="revoked"):
            auth.authenticate_token(store, secret)
        assert [e["action"] for e in store.audit_events()][-2:] == ["token_created", "token_revoked"]
