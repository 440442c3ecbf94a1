"""Browser sessions that survive a reload: a signed, expiring session cookie (no Streamlit here).

A Streamlit session lives in one websocket connection; reloading the page opens a new one and would log
the user out. After a login the app therefore gives the browser a cookie, set by the server
(``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS) so that page scripts can never read it:

1. :func:`SessionRegistry.start` (at login) records a new session id and returns a one-time *ticket*
   (random, valid :data:`TICKET_TTL_S` seconds, usable once).
2. The page posts the ticket to the app server's ``/medsyn/session`` route
   (:mod:`medsyn_app.web_routes`), which calls :func:`SessionRegistry.redeem` and answers with
   ``Set-Cookie``. The ticket travels in a request body, never in a URL.
3. On a reload, the new Streamlit session reads the cookie (``st.context.cookies``) and calls
   :func:`SessionRegistry.resume`, which accepts it only when all of these hold: the HMAC-SHA256
   signature (key: the home folder's ``session-cookie`` secret, :mod:`medsyn_core.home_keys`) matches;
   the session id is known to this server process and not ended; the session was active within the same
   idle timeout as any session (:func:`medsyn_core.auth.session_timeout_s`); it is younger than
   :data:`MAX_AGE_S`; and the account is still active with the role it had at login.

Logging out, an idle timeout, disabling an account or changing its role ends the session id; a server
restart ends every one (the registry lives in the server's memory), so a copied cookie is worth nothing
after any of these. The cookie holds the username, role, session id and times, never a password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE_NAME = "medsyn_session"
#: Seconds a login's one-time ticket may wait for the browser to exchange it for the cookie.
TICKET_TTL_S = 60.0
#: Longest life of one session whatever the activity (then the user logs in again).
MAX_AGE_S = 12 * 3600.0
#: The route the browser posts its ticket to (and sends DELETE to, on logout).
ROUTE = "/medsyn/session"
_KEY_PURPOSE = "session-cookie"
_VERSION = "v1"


class CookieRefused(ValueError):
    """The cookie does not resume a session; ``reason`` says why (for the audit log, not the user)."""

    value_free_message = True

    def __init__(self, reason: str):
        super().__init__(f"session cookie refused: {reason}")
        self.reason = reason


@dataclass
class _Session:
    username: str
    role: str
    issued: float
    last_seen: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key() -> bytes:
    from medsyn_core.home_keys import home_key

    return home_key(_KEY_PURPOSE)


def sign(payload: dict) -> str:
    """``v1.<payload>.<signature>``: base64url JSON and its HMAC-SHA256 under the home's cookie key."""
    body = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    mac = hmac.new(_key(), f"{_VERSION}.{body}".encode(), hashlib.sha256).digest()
    return f"{_VERSION}.{body}.{_b64(mac)}"


def unsign(value: str) -> dict:
    """The payload of a cookie signed by :func:`sign`; raises :class:`CookieRefused` otherwise."""
    parts = value.split(".") if isinstance(value, str) and len(value) < 4096 else []
    if len(parts) != 3 or parts[0] != _VERSION:
        raise CookieRefused("malformed")
    expected = hmac.new(_key(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        given = _unb64(parts[2])
        payload = json.loads(_unb64(parts[1]))
    except (ValueError, json.JSONDecodeError):
        raise CookieRefused("malformed") from None
    if not hmac.compare_digest(expected, given):
        raise CookieRefused("bad signature")
    if not isinstance(payload, dict) or not {"u", "r", "sid", "iat"} <= set(payload):
        raise CookieRefused("malformed")
    return payload


class SessionRegistry:
    """The sessions of this server process (thread-safe; one per process: :data:`REGISTRY`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._tickets: dict[str, tuple[str, float]] = {}

    def start(self, username: str, role: str, now: float | None = None) -> tuple[str, str]:
        """A new session for a user who just logged in: returns ``(session id, one-time ticket)``."""
        now = time.time() if now is None else now
        sid, ticket = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[sid] = _Session(username, role, now, now)
            self._tickets = {t: v for t, v in self._tickets.items() if v[1] > now}  # forget stale ones
            self._tickets[ticket] = (sid, now + TICKET_TTL_S)
        return sid, ticket

    def redeem(self, ticket: str, now: float | None = None) -> str:
        """The signed cookie value for a ticket from :meth:`start` (once, within its lifetime)."""
        now = time.time() if now is None else now
        with self._lock:
            sid, expires = self._tickets.pop(ticket, (None, 0.0)) if isinstance(ticket, str) else (None, 0.0)
            session = self._sessions.get(sid) if sid else None
        if session is None or expires < now:
            raise CookieRefused("unknown or expired ticket")
        return sign({"u": session.username, "r": session.role, "sid": sid, "iat": int(session.issued)})

    def touch(self, sid: str | None, now: float | None = None) -> None:
        """Record activity of session ``sid`` (each rerun that is the user's activity)."""
        with self._lock:
            session = self._sessions.get(sid) if sid else None
            if session is not None:
                session.last_seen = time.time() if now is None else now

    def end(self, sid: str | None) -> None:
        """End session ``sid`` (logout, expiry): its cookie never resumes anything again."""
        with self._lock:
            if sid:
                self._sessions.pop(sid, None)
            self._tickets = {t: v for t, v in self._tickets.items() if v[0] != sid}

    def end_cookie(self, value: str) -> None:
        """End the session a (validly signed) cookie names; anything else is ignored."""
        try:
            self.end(unsign(value)["sid"])
        except CookieRefused:
            pass

    def resume(self, value: str, current_role, idle_timeout_s: float,
               now: float | None = None) -> tuple[str, str]:
        """``(username, session id)`` of the session a cookie names, after every check in the module
        docstring. ``current_role(username)`` gives the account's role now (None: disabled or gone).
        Raises :class:`CookieRefused`; a session that fails for its age, account or role is ended."""
        now = time.time() if now is None else now
        payload = unsign(value)
        sid = str(payload["sid"])
        with self._lock:
            session = self._sessions.get(sid)
        if session is None:
            raise CookieRefused("session ended or unknown to this server")
        if session.username != payload["u"] or session.role != payload["r"]:
            raise CookieRefused("cookie does not match its session")
        reason = None
        if now - session.last_seen > idle_timeout_s:
            reason = "idle timeout"
        elif now - session.issued > MAX_AGE_S:
            reason = "too old"
        else:
            role = current_role(session.username)
            if role is None:
                reason = "account disabled or removed"
            elif role != session.role:
                reason = "role changed"
        if reason is not None:
            self.end(sid)
            raise CookieRefused(reason)
        self.touch(sid, now)
        return session.username, sid

    def end_user(self, username: str) -> int:
        """End every session of ``username`` (e.g. after a role change); returns how many."""
        with self._lock:
            ended = [sid for sid, s in self._sessions.items() if s.username == username]
            for sid in ended:
                del self._sessions[sid]
        return len(ended)


#: The registry of this server process.
REGISTRY = SessionRegistry()
