"""The app's login gate and per-page role check (Streamlit glue over :mod:`medsyn_core.auth`).

Only ``app.py`` and ``pages/`` import this module (the engines never import Streamlit). The login lives
in ``st.session_state[SESSION_KEY] = {"username": ..., "last_seen": epoch seconds}``, which is kept on
the server; the browser cannot set it. Every rerun (:func:`page_guard`) and every run of an
auto-refreshing fragment (:func:`fragment_guard`, its first line) passes
:func:`medsyn_core.auth.check_session`: the account is re-loaded from the database, so a role change
or a disabled account applies at once, and an idle session older than
:func:`medsyn_core.auth.session_timeout_s` is logged out. A fragment's automatic refresh is not
activity: it never extends the session.

The first-run admin form (no account exists yet) is shown to visitors on this machine only; anyone
else needs the one-time token the server prints to its log. Logins pass the client address
(:func:`client_source`) so that the throttle also works per address.

Optional single sign-on: when Streamlit's secrets hold an ``[auth]`` section (an OIDC provider, see
``st.login``), the login page also offers "Log in with single sign-on". The provider's login alone grants
nothing: the identity it asserts (``[medsyn] sso_identity_claim``, default ``email``) must be linked to an
active local account by an admin (Users page), whose role then applies. Logging out, or an idle timeout,
also ends the provider login in this browser, so it cannot silently log the next person back in.

A browser reload opens a new Streamlit session; the login survives it through a signed, expiring,
``HttpOnly`` session cookie (:mod:`medsyn_core.web_sessions`): each login starts a server-side session
and hands the page a one-time ticket, which a tiny script posts to the server's ``/medsyn/session``
route (:mod:`medsyn_app.web_routes`, mounted by ``serve.py``) in exchange for the cookie. A new session
reads the cookie with ``st.context.cookies`` and resumes the login only if it passes every check of
:meth:`~medsyn_core.web_sessions.SessionRegistry.resume` (signature, same idle timeout, account still
active with the same role). Logging out ends the server-side session and removes the cookie.

Before login only the login page exists (:func:`login_gate` gives ``st.navigation`` one hidden page), so
no other page is listed or reachable.

Tests log in with ``tests/app_helpers.logged_in``: it creates the account in the test's MedSyn home and
puts the same session entry a real login puts.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import sys
import threading
import time
from urllib.parse import urlsplit

import streamlit as st

from medsyn_core import auth, settings
from medsyn_core.auth import User
from medsyn_core.storage import Store
from medsyn_core.web_sessions import COOKIE_NAME, REGISTRY, ROUTE, CookieRefused, unsign

SESSION_KEY = "medsyn_auth"
SSO_END_KEY = "medsyn_sso_end"
SETUP_OK_KEY = "medsyn_setup_token_ok"
UPLOADS_KEY = "medsyn_audited_uploads"
TICKET_KEY = "medsyn_cookie_ticket"      # a fresh login's one-time ticket, until the page posts it
CLEAR_COOKIE_KEY = "medsyn_clear_cookie"  # after a logout: the login page removes the cookie
#: Request headers a reverse proxy adds: with any of them the visitor is not "on this machine".
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host")

_start_lock = threading.Lock()
_started: dict[str, object] = {}     # home folder -> its permissions.HomeCheck at start (or None)
_setup_token: str | None = None       # one-time first-run token of this server process


# -- process start ------------------------------------------------------------------------------
def start_service() -> None:
    """Once per server process and home folder: private umask, home folder check and tightening
    (warnings to the server log), the admin from ``$MEDSYN_ADMIN_PASSWORD`` (then removed from the
    environment) and the dummy password hash."""
    home = str(settings.home_dir(create=False))
    with _start_lock:
        if home not in _started:
            from medsyn_core.permissions import start_service as start

            check = start(sys.stderr)
            with Store() as store:
                auth.ensure_admin_from_env(store)
            auth.warm_up()
            _started[home] = check


# -- where the visitor is -----------------------------------------------------------------------
def _peer_ip() -> str | None:
    """The connection's address as Streamlit sees it (None: loopback, or not known)."""
    ip = st.context.ip_address
    return ip if isinstance(ip, str) and ip else None


def _proxied() -> bool:
    headers = {k.lower() for k in st.context.headers.keys()}
    return any(h in headers for h in PROXY_HEADERS)


def client_source() -> str:
    """A label of the client's address for the login throttle and the audit log: the IP address
    (validated, so never arbitrary text), ``proxy`` behind a reverse proxy that Streamlit does not
    resolve, or ``local`` for this machine."""
    ip = _peer_ip()
    if ip is not None:
        try:
            return str(ipaddress.ip_address(ip))
        except ValueError:
            return "unknown"
    return "proxy" if _proxied() else "local"


def is_local_visitor() -> bool:
    """True only when nothing says the browser is elsewhere: a loopback connection (Streamlit reports
    no address), no reverse-proxy headers, and the address bar (when known) naming this machine."""
    if _peer_ip() is not None or _proxied():
        return False
    url = st.context.url
    if not url:
        return True
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _first_run_token(announce: bool = False) -> str:
    """The one-time first-run token of this server process (made on first use); ``announce`` prints it
    to the server log (once per visitor session that asks for it)."""
    global _setup_token
    with _start_lock:
        if _setup_token is None:
            _setup_token = secrets.token_urlsafe(16)
        token = _setup_token
    if announce:
        print("MedSyn first run: no account exists yet. A visitor who is not on this machine needs this "
              f"one-time set-up token to create the admin account: {token}", file=sys.stderr, flush=True)
    return token


def _token_matches(typed: str) -> bool:
    return hmac.compare_digest(typed.strip().encode(), _first_run_token().encode())


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
    log_in(user, via="sso")
    st.rerun()


def log_in(user: User, via: str | None = None) -> None:
    """Start the app session of ``user`` (after a successful login): the server-side session entry,
    and a server-side browser session whose one-time ticket :func:`cookie_script` hands to the page."""
    sid, ticket = REGISTRY.start(user.username, user.role)
    entry = {"username": user.username, "last_seen": time.time(), "sid": sid}
    if via:
        entry["via"] = via
    st.session_state[SESSION_KEY] = entry
    st.session_state[TICKET_KEY] = ticket


def _cookie() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE_NAME)
    except Exception:  # noqa: BLE001 - no request context (e.g. AppTest): no cookie
        return None
    return value if isinstance(value, str) and value else None


def _resume_from_cookie() -> dict | None:
    """The session entry resumed from this browser's cookie (a reload), or None (no or refused cookie;
    a refused one is removed by the login page)."""
    value = _cookie()
    if value is None:
        return None
    with Store() as store:
        def role_now(username: str) -> str | None:
            current = auth.load_user(store, username)
            return current.role if current is not None else None

        try:
            username, sid = REGISTRY.resume(value, role_now, auth.session_timeout_s())
        except CookieRefused as exc:
            if exc.reason == "idle timeout":
                store.append_event(unsign(value)["u"], "session_expired", {"via": "cookie"})
            st.session_state[CLEAR_COOKIE_KEY] = True
            return None
        store.append_event(username, "session_resumed", {"source": client_source()})
    entry = {"username": username, "last_seen": time.time(), "sid": sid}
    st.session_state[SESSION_KEY] = entry
    return entry


def _script(js: str) -> None:
    """Run a small fixed script in the page (no user input is ever put into it)."""
    st.html(f"<script>{js}</script>", unsafe_allow_javascript=True)


def cookie_script() -> None:
    """Once after a login: the page posts its one-time ticket to the server, which sets the session
    cookie (HttpOnly: no script can read it). After a logout or a refused cookie: ask the server to
    remove it."""
    ticket = st.session_state.pop(TICKET_KEY, None)
    if ticket is not None:
        _script(f"fetch({ROUTE!r}, {{method: 'POST', body: {ticket!r}, credentials: 'same-origin', "
                "headers: {'Content-Type': 'text/plain'}});")
    if st.session_state.pop(CLEAR_COOKIE_KEY, False):
        _script(f"fetch({ROUTE!r}, {{method: 'DELETE', credentials: 'same-origin'}});")


def _end_session(entry: dict, exc: auth.SessionEnded) -> None:
    REGISTRY.end(entry.get("sid"))
    st.session_state.pop(SESSION_KEY, None)
    st.session_state[CLEAR_COOKIE_KEY] = True
    st.session_state["medsyn_notice"] = str(exc)
    if entry.get("via") == "sso":
        st.session_state[SSO_END_KEY] = True  # the login gate ends the provider login too


def current_user(touch: bool = True) -> User | None:
    """The logged-in, still active user of this browser session as the database has it now, or None
    (expired or disabled sessions end here). ``touch``: this run is the user's activity."""
    entry = st.session_state.get(SESSION_KEY) or _resume_from_cookie()
    if not entry:
        return None
    try:
        with Store() as store:
            user = auth.check_session(store, entry["username"], entry["last_seen"])
    except auth.SessionEnded as exc:
        _end_session(entry, exc)
        return None
    if touch:
        entry["last_seen"] = time.time()
        REGISTRY.touch(entry.get("sid"))
    return user


def fragment_guard(action: str | None = None) -> User:
    """First line of every auto-refreshing fragment (``st.fragment(run_every=...)``): the session
    check again on each run, since a fragment rerun skips the page's :func:`page_guard` and would
    otherwise act with the user object of the page's first run. An ended session, or a role that no
    longer allows ``action``, reruns the whole app (login page or refusal). Not activity."""
    user = current_user(touch=False)
    if user is None or (action is not None and not auth.allowed(user, action)):
        st.rerun(scope="app")
    return user


def _setup_token_form() -> bool:
    """For a visitor not on this machine: ask for the server's one-time token; True once given."""
    if st.session_state.get(SETUP_OK_KEY):
        return True
    if not st.session_state.get("medsyn_setup_token_announced"):
        _first_run_token(announce=True)  # into the server log, where the operator reads it
        st.session_state["medsyn_setup_token_announced"] = True
    st.title("MedSyn — first run")
    st.markdown("No account exists yet, and you are not on the machine that runs MedSyn. Enter the "
                "**one-time set-up token** that the MedSyn server printed to its log (`MedSyn first run: "
                "…`), or create the admin there with `medsyn users create-admin`.")
    with st.form("setup_token"):
        typed = st.text_input("Set-up token", type="password")
        if st.form_submit_button("Continue"):
            if _token_matches(typed):
                st.session_state[SETUP_OK_KEY] = True
                st.rerun()
            with Store() as store:
                store.append_event("(unknown user)", "first_run_refused", {"source": client_source()})
            st.error("That is not the set-up token. Copy it from the server log (it is printed when the "
                     "first visitor arrives).")
    return False


def _first_run_form() -> None:
    global _setup_token
    if not is_local_visitor() and not _setup_token_form():
        return
    st.title("MedSyn — first run")
    st.markdown("No account exists yet. Create the **admin** account (there is no default password). "
                "You can also set `MEDSYN_ADMIN_PASSWORD` before the first start, or run "
                "`medsyn users create-admin`.")
    with st.form("first_admin"):
        username = st.text_input("Admin username", value="admin",
                                 help="You log in with this username from now on (shown in the sidebar).")
        password = st.text_input("Password (at least 10 characters)", type="password")
        repeat = st.text_input("Repeat the password", type="password")
        if st.form_submit_button("Create admin"):
            if password != repeat:
                st.error("The two passwords differ; type them again.")
                return
            if not is_local_visitor() and not st.session_state.get(SETUP_OK_KEY):
                st.error("Enter the set-up token first.")  # checked again when the form is sent
                return
            try:
                with Store() as store:
                    user = auth.create_first_admin(store, username, password, via="setup form")
            except auth.AuthError as exc:
                st.error(str(exc))
                return
            with _start_lock:
                _setup_token = None  # one-time: spent
            st.session_state.pop(SETUP_OK_KEY, None)
            log_in(user)
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
                    user = auth.authenticate(store, username, password, source=client_source())
            except auth.AuthError as exc:
                st.error(str(exc))
                return
            log_in(user)
            st.rerun()
    with Store() as store:
        first = auth.first_admin_hint(store)
    if first is not None:
        st.info(f"First start: the admin account is called **{first}** (created from "
                "`MEDSYN_ADMIN_PASSWORD` or `medsyn users create-admin`; its password is the one set there).")
    st.caption("Accounts are created by an admin on the Users page.")


def login_gate(url_paths: list[str] | tuple[str, ...] = ()) -> User:
    """Return the logged-in user, or show the first-run/login form and stop the script. ``url_paths``:
    the app's page addresses; before login each of them shows the login form too (a bookmarked page opens
    after the login instead of a "page not found"), and no page is listed."""
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

    def login_page() -> None:
        cookie_script()  # e.g. remove the cookie of a session that just ended
        if first_run:
            _first_run_form()
        else:
            _login_form(sso)

    # the only page before login: nothing is listed, and every page's address shows this login
    pages = [st.Page(login_page, title="Log in", icon=":material/login:", default=True)]
    pages += [st.Page(login_page, title="Log in", icon=":material/login:", url_path=path)
              for path in url_paths]
    st.navigation(pages, position="hidden").run()
    st.stop()


def logout() -> None:
    """End the session and forget everything it held (sampled rows, job ids, …), so the next user of
    the same browser tab sees nothing of the previous one's work."""
    entry = st.session_state.get(SESSION_KEY)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[CLEAR_COOKIE_KEY] = True  # the login page asks the server to remove the cookie
    if entry:
        REGISTRY.end(entry.get("sid"))
        with Store() as store:
            store.append_event(entry["username"], "logout", {})
        if entry.get("via") == "sso":
            st.logout()  # also end the provider login in this browser (a redirect via the provider)


def sidebar(user: User) -> None:
    """Who is logged in, with which role, and the logout button; for admins, a warning while other
    local accounts can open the home folder (one ``stat`` per run, so a fix shows at once)."""
    st.sidebar.markdown(f"**{user.username}** · {user.role}")
    if auth.allowed(user, "manage_users"):
        from medsyn_core.permissions import check_home

        check = check_home(tighten=False)
        if check is not None and (text := check.warning(with_path=False)) is not None:
            st.sidebar.warning(text)
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


def audit_upload(user: User, where: str, files) -> None:
    """Audit an upload of real data (Streamlit ``UploadedFile`` objects) once per set of files in this
    session: actor, page, content hash prefix, file count and bytes (never names or values)."""
    if not files:
        return
    files = list(files)
    key = (where, tuple(f.file_id for f in files))
    seen = st.session_state.setdefault(UPLOADS_KEY, set())
    if key in seen:
        return
    from medsyn_core.audit import record_upload

    with Store() as store:
        record_upload(store, user, where, [f.getvalue() for f in files])
    seen.add(key)
