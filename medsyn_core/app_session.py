"""The app's login gate and per-page role check (Streamlit glue over :mod:`medsyn_core.auth`).

Only ``app.py`` and ``pages/`` import this module (the engines never import Streamlit). The login lives
in ``st.session_state[SESSION_KEY] = {"username": ..., "last_seen": epoch seconds}``, which is kept on
the server; the browser cannot set it. Each rerun reloads the account from the database, so a role
change or a disabled account applies at once, and an idle session older than
:func:`medsyn_core.auth.session_timeout_s` is logged out.

Optional single sign-on: when Streamlit's secrets hold an ``[auth]`` section (an OIDC provider, see
``st.login``), the login page also offers "Log in with single sign-on". The provider's login alone grants
nothing: the identity it asserts (``[medsyn] sso_identity_claim``, default ``email``) must be linked to an
active local account by an admin (Users page), whose role then applies. Logging out, or an idle timeout,
also ends the provider login in this browser, so it cannot silently log the next person back in.

Tests log in with ``tests/app_helpers.logged_in``: it creates the account in the test's MedSyn home and
puts the same session entry a real login puts.
"""

from __future__ import annotations

import time

import streamlit as st

from medsyn_core import auth
from medsyn_core.auth import User
from medsyn_core.storage import Store

SESSION_KEY = "medsyn_auth"
SSO_END_KEY = "medsyn_sso_end"


def sso_settings() -> dict | None:
    """The single sign-on set-up from Streamlit's secrets, or None when no ``[auth]`` section exists
    (then only local accounts log in)."""
    try:
        if "auth" not in st.secrets:
            return None
        medsyn = st.secrets.get("medsyn", {})
    except (FileNotFoundError, st.errors.StreamlitSecretNotFoundError):
        return None
    return {"claim": medsyn.get("sso_identity_claim", "email"),
            "provider": medsyn.get("sso_provider"),  # a named [auth.<provider>] section, if several
            "label": medsyn.get("sso_button_label", "Log in with single sign-on")}


def _start_sso(provider: str | None) -> None:
    try:
        st.login(provider)  # None: the single [auth] provider
    except st.errors.StreamlitAuthError as exc:  # e.g. a missing key in the [auth] secrets
        st.session_state["medsyn_notice_error"] = (
            f"Single sign-on is not set up correctly, so it cannot start: {exc} Ask IT to check the "
            "[auth] section of .streamlit/secrets.toml; local MedSyn accounts still work.")


def _sso_login(sso: dict) -> None:
    """The provider has logged this browser in: find the linked account or explain why not; stops."""
    try:
        with Store() as store:
            user = auth.authenticate_sso(store, dict(st.user), sso["claim"])
    except auth.AuthError as exc:
        st.title("MedSyn — log in")
        st.error(str(exc))
        st.button("Sign out of single sign-on", on_click=st.logout)
        st.stop()
    st.session_state[SESSION_KEY] = {"username": user.username, "last_seen": time.time(), "via": "sso"}
    st.rerun()


def current_user() -> User | None:
    """The logged-in, still active user of this browser session, or None (expired sessions end here)."""
    entry = st.session_state.get(SESSION_KEY)
    if not entry:
        return None
    now = time.time()
    with Store() as store:
        if now - entry["last_seen"] > auth.session_timeout_s():
            store.append_event(entry["username"], "session_expired", {})
            del st.session_state[SESSION_KEY]
            st.session_state["medsyn_notice"] = "Your session expired after inactivity; please log in again."
            if entry.get("via") == "sso":
                st.session_state[SSO_END_KEY] = True  # the login gate ends the provider login too
            return None
        user = auth.load_user(store, entry["username"])
    if user is None:  # disabled or deleted meanwhile
        del st.session_state[SESSION_KEY]
        return None
    entry["last_seen"] = now
    return user


def _first_run_form() -> None:
    st.title("MedSyn — first run")
    st.markdown("No account exists yet. Create the **admin** account (there is no default password). "
                "You can also set `MEDSYN_ADMIN_PASSWORD` before the first start, or run "
                "`medsyn users create-admin`.")
    with st.form("first_admin"):
        username = st.text_input("Admin username", value="admin")
        password = st.text_input("Password (at least 10 characters)", type="password")
        repeat = st.text_input("Repeat the password", type="password")
        if st.form_submit_button("Create admin"):
            if password != repeat:
                st.error("The two passwords differ; type them again.")
                return
            try:
                with Store() as store:
                    user = auth.create_first_admin(store, username, password, via="setup form")
            except auth.AuthError as exc:
                st.error(str(exc))
                return
            st.session_state[SESSION_KEY] = {"username": user.username, "last_seen": time.time()}
            st.rerun()


def _login_form(sso: dict | None) -> None:
    st.title("MedSyn — log in")
    notice = st.session_state.pop("medsyn_notice", None)
    if notice:
        st.info(notice)
    if error := st.session_state.pop("medsyn_notice_error", None):
        st.error(error)
    if sso is not None:
        st.button(sso["label"], type="primary", on_click=_start_sso, args=(sso["provider"],))
        st.caption("Or log in with a local MedSyn account:")
    with st.form("login"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Log in"):
            try:
                with Store() as store:
                    user = auth.authenticate(store, username, password)
            except auth.AuthError as exc:
                st.error(str(exc))
                return
            st.session_state[SESSION_KEY] = {"username": user.username, "last_seen": time.time()}
            st.rerun()
    st.caption("Accounts are created by an admin on the Users page.")


def login_gate() -> User:
    """Return the logged-in user, or show the first-run/login form and stop the script."""
    user = current_user()
    if user is not None:
        return user
    sso = sso_settings()
    end_sso = st.session_state.pop(SSO_END_KEY, False)
    if sso is not None and st.user.get("is_logged_in", False):
        if end_sso:  # an expired single sign-on session: end the provider login, never log back in
            st.logout()  # queues the redirect through the provider's end_session page
            st.stop()
        _sso_login(sso)
    with Store() as store:
        auth.ensure_admin_from_env(store)
        first_run = not auth.has_users(store)
    if first_run:
        _first_run_form()
    else:
        _login_form(sso)
    st.stop()


def logout() -> None:
    """End the session and forget everything it held (sampled rows, job ids, …), so the next user of
    the same browser tab sees nothing of the previous one's work."""
    entry = st.session_state.get(SESSION_KEY)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if entry:
        with Store() as store:
            store.append_event(entry["username"], "logout", {})
        if entry.get("via") == "sso":
            st.logout()  # also end the provider login in this browser (a redirect via the provider)


def sidebar(user: User) -> None:
    """Who is logged in, with which role, and the logout button."""
    st.sidebar.markdown(f"**{user.username}** · {user.role}")
    # a callback, so the run that follows already shows the login page; st.rerun() here would also
    # drop the redirect that st.logout() queues for a single sign-on session
    st.sidebar.button("Log out", key="medsyn_logout", on_click=logout)


def refusal(user: User | None, action: str) -> str | None:
    """The readable refusal for ``action``, or None if allowed."""
    try:
        auth.require(user, action)
    except auth.PermissionDenied as exc:
        return str(exc)
    return None


def page_guard(action: str | None = None) -> User:
    """Top of every page: stop unless logged in and (if given) allowed ``action``; returns the user."""
    user = current_user()
    if user is None:
        st.warning("Not logged in: open the app's start page to log in.")
        st.stop()
    if action is not None:
        message = refusal(user, action)
        if message:
            st.error(message)
            st.stop()
    return user
