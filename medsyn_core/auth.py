"""Local accounts, roles and the permission check used by pages, library entry points and the CLI.

Passwords are hashed with argon2id (``argon2-cffi``, memory-hard); the hash lives only in the ``users``
table and is never returned, shown or logged. Roles:

* ``clinician`` — preview, sample and export synthetic data from existing models;
* ``researcher`` — also upload real data, change privacy settings, train and evaluate;
* ``admin`` — everything, plus user management, the audit log and deleting models.

:func:`require` is THE role check: pages call it before rendering controls. Library entry points
that act for a user call :func:`authorise` instead, which first re-loads the account from the store,
so a stale :class:`User` object (an open page, a live panel) of a disabled or demoted account cannot
act. :func:`check_session` is THE session check of the app (idle timeout, account still active),
run on every rerun and every live-panel refresh.

Logins (:func:`authenticate`) are throttled per username and per client address, with the failure
counted in the same transaction as the lock check, and take the same time for unknown and real
usernames; the throttle stores keyed hashes, never what was typed. Details: docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass

from medsyn_core import settings
from medsyn_core.storage import Store

ROLES: tuple[str, ...] = ("admin", "researcher", "clinician")

#: action -> roles allowed to do it.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view_models": frozenset({"admin", "researcher", "clinician"}),
    "view_images": frozenset({"admin", "researcher", "clinician"}),
    "sample": frozenset({"admin", "researcher", "clinician"}),
    "export": frozenset({"admin", "researcher", "clinician"}),
    "upload_real_data": frozenset({"admin", "researcher"}),
    "change_privacy": frozenset({"admin", "researcher"}),
    "train": frozenset({"admin", "researcher"}),
    "evaluate": frozenset({"admin", "researcher"}),
    "run_example_job": frozenset({"admin", "researcher"}),
    "manage_users": frozenset({"admin"}),
    "manage_jobs": frozenset({"admin"}),  # act on (cancel, resume, inspect) other users' jobs
    "view_audit": frozenset({"admin"}),
    "delete_model": frozenset({"admin"}),
    "manage_uploads": frozenset({"admin"}),
    "approve_models": frozenset({"admin"}),  # let clinicians use a model below the quality bar
    "run_federation": frozenset({"admin"}),  # start a federation server (SuperLink) and save its model
    "join_federation": frozenset({"admin", "researcher"}),  # join one as a site with the site's real data
}

#: Readable names of actions for refusal messages.
ACTION_TEXT: dict[str, str] = {
    "view_models": "view models", "view_images": "view images", "sample": "sample synthetic data",
    "export": "export synthetic data", "upload_real_data": "upload real patient data",
    "change_privacy": "change privacy settings", "train": "train models", "evaluate": "run evaluations",
    "run_example_job": "run background jobs", "manage_users": "manage users",
    "manage_jobs": "act on other users' jobs",
    "view_audit": "view the audit log", "delete_model": "delete models",
    "manage_uploads": "manage uploaded real data", "approve_models": "approve models for clinicians",
    "run_federation": "run a federation server", "join_federation": "join a federation as a site",
}

ADMIN_PASSWORD_ENV = "MEDSYN_ADMIN_PASSWORD"
SESSION_TIMEOUT_ENV = "MEDSYN_SESSION_TIMEOUT_MIN"
DEFAULT_SESSION_TIMEOUT_S = 30 * 60
#: Failures allowed before a username is locked; the lock doubles with each further failure.
MAX_FAILURES = 5
#: Failures allowed from one client address (all usernames together) before the address is locked.
MAX_SOURCE_FAILURES = 20
LOCK_BASE_S = 30.0
LOCK_MAX_S = 15 * 60.0
#: A client address's failures are forgotten this long after its last one (usernames: after a login).
SOURCE_WINDOW_S = LOCK_MAX_S
MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
#: Names the audit log uses for non-accounts (the CLI operator, the job system): never account names.
RESERVED_USERNAMES = frozenset({"cli", "system"})


class AuthError(ValueError):
    """Login refused or bad account input; the message is safe to show (no hashes, no passwords)."""

    value_free_message = True


class PermissionDenied(PermissionError):
    """The user's role does not allow the action."""

    value_free_message = True


@dataclass(frozen=True)
class User:
    """A logged-in account (never carries the password hash).

    ``operator`` marks the workstation operator of the CLI (``audit_cli.CLI_USER``): whoever can read
    the database file, with no account to re-load; :func:`authorise` checks only its role."""

    username: str
    role: str
    operator: bool = False

    def can(self, action: str) -> bool:
        return allowed(self, action)


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB, t=3)


def allowed(user: User | None, action: str) -> bool:
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r}; known: {', '.join(sorted(PERMISSIONS))}")
    return user is not None and user.role in PERMISSIONS[action]


def require(user: User | None, action: str) -> User:
    """Return ``user`` if its role may do ``action``; else raise :class:`PermissionDenied` (readable)."""
    if allowed(user, action):
        return user  # type: ignore[return-value]
    what = ACTION_TEXT.get(action, action)
    if user is None:
        raise PermissionDenied(f"Not allowed: log in to {what}.")
    roles = " or ".join(sorted(PERMISSIONS[action]))
    raise PermissionDenied(f"Not allowed: the {user.role} role cannot {what} (needs {roles}). "
                           "Ask an admin if you need this.")


def authorise(store: Store, user: User | None, action: str) -> User:
    """THE check of library entry points that act for a user (jobs, models, accounts, audit): re-load
    the account from the store, refuse a disabled or removed one, and check ``action`` against its
    *current* role. Returns the current :class:`User`; raises :class:`PermissionDenied` (readable)."""
    if user is None or user.operator:
        return require(user, action)
    current = load_user(store, user.username)
    if current is None:
        raise PermissionDenied(f"Not allowed: the account {user.username!r} is disabled or no longer "
                               "exists. Log in again, or ask an admin.")
    return require(current, action)


class SessionEnded(AuthError):
    """The app session may not go on; ``reason`` is 'expired' or 'disabled', the message is readable."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_session(store: Store, username: str, last_seen: float, now: float | None = None) -> User:
    """THE session check, on every rerun and every live-panel refresh: the session was active within
    :func:`session_timeout_s` and the account is still active. Returns the account as it is *now* (a
    changed role applies at once); raises :class:`SessionEnded` otherwise (an expiry is audited)."""
    now = time.time() if now is None else now
    if now - last_seen > session_timeout_s():
        store.append_event(username, "session_expired", {})
        raise SessionEnded("expired", "Your session expired after inactivity; please log in again.")
    user = load_user(store, username)
    if user is None:
        raise SessionEnded("disabled", "Your session ended: the account was disabled or removed. "
                                       "Ask an admin if you need access.")
    return user


def session_timeout_s() -> float:
    """Idle time after which a login expires (``MEDSYN_SESSION_TIMEOUT_MIN``, default 30 minutes)."""
    raw = os.environ.get(SESSION_TIMEOUT_ENV, "").strip()
    return float(raw) * 60 if raw else float(DEFAULT_SESSION_TIMEOUT_S)


# -- accounts -------------------------------------------------------------------------------------
def _check_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise AuthError("Usernames are 2-32 characters: a lower-case letter first, then letters, digits, "
                        "'.', '_' or '-'.")
    if name in RESERVED_USERNAMES:
        raise AuthError(f"{name!r} is reserved for MedSyn's own entries in the audit log; choose another "
                        "username.")
    return name


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.")


def has_users(store: Store) -> bool:
    return store.has_users()


def _insert_user(store: Store, username: str, password: str, role: str) -> User:
    name = _check_username(username)
    _check_password(password)
    if role not in ROLES:
        raise AuthError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    if store.user_row(name) is not None or not store.insert_user(name, _hasher().hash(password), role):
        raise AuthError(f"The user {name!r} already exists; choose another name.")
    return User(name, role)


def create_first_admin(store: Store, username: str, password: str, via: str) -> User:
    """Create the first admin; refused once any account exists (no default passwords, ever)."""
    if has_users(store):
        raise AuthError("An account already exists; the first-run admin set-up is closed. "
                        "Ask an admin to create your account.")
    user = _insert_user(store, username, password, "admin")
    store.append_event(user.username, "user_created", {"username": user.username, "role": "admin",
                                                       "via": via})
    return user


def first_admin_hint(store: Store) -> str | None:
    """The first admin's username while nobody has logged in yet (the login page says it, so an admin
    created from ``$MEDSYN_ADMIN_PASSWORD`` knows which name to type); None afterwards."""
    if store.anyone_logged_in():
        return None
    return store.first_admin_name()


def ensure_admin_from_env(store: Store, username: str = "admin") -> User | None:
    """On first run, create the admin from ``$MEDSYN_ADMIN_PASSWORD`` if set; None if nothing to do.

    The variable is removed from this process's environment in every case, so no child process (job
    workers, anything started later) inherits the password."""
    password = os.environ.pop(ADMIN_PASSWORD_ENV, "")
    if not password or has_users(store):
        return None
    return create_first_admin(store, username, password, via="environment")


def create_user(store: Store, actor: User, username: str, password: str, role: str) -> User:
    """Admin creates an account (audited: who created which username with which role)."""
    actor = authorise(store, actor, "manage_users")
    user = _insert_user(store, username, password, role)
    store.append_event(actor.username, "user_created", {"username": user.username, "role": role})
    return user


def set_role(store: Store, actor: User, username: str, role: str) -> None:
    """Admin changes a role (audited). The last active admin cannot be demoted."""
    actor = authorise(store, actor, "manage_users")
    if role not in ROLES:
        raise AuthError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    row = store.user_row(username)
    if row is None:
        raise AuthError(f"No user called {username!r}.")
    if row["role"] == "admin" and role != "admin" and _count_admins(store) <= 1:
        raise AuthError("This is the last admin; make another admin first.")
    store.set_user_role(username, role)
    store.append_event(actor.username, "role_changed", {"username": username, "from": row["role"],
                                                        "to": role})


def set_active(store: Store, actor: User, username: str, active: bool) -> None:
    """Admin disables or re-enables an account (audited)."""
    actor = authorise(store, actor, "manage_users")
    if not active and username == actor.username:
        raise AuthError("You cannot disable your own account.")
    if not store.set_user_active(username, active):
        raise AuthError(f"No user called {username!r}.")
    store.append_event(actor.username, "user_enabled" if active else "user_disabled",
                       {"username": username})


def _count_admins(store: Store) -> int:
    return store.count_active_admins()


def list_users(store: Store, actor: User) -> list[dict]:
    """Usernames, roles, state and single sign-on link (never the hashes)."""
    authorise(store, actor, "manage_users")
    return store.list_users()


def _normalise_identity(identity: str) -> str:
    return identity.strip().lower()


def set_sso_identity(store: Store, actor: User, username: str, identity: str | None) -> None:
    """Admin links ``username`` to the identity the OIDC provider asserts (e.g. its e-mail claim), or
    removes the link with ``None``/empty (audited; the identity itself is not written to the log)."""
    actor = authorise(store, actor, "manage_users")
    value = _normalise_identity(identity) if identity and identity.strip() else None
    if value is not None:
        other = store.user_with_sso(value, other_than=username)
        if other is not None:
            raise AuthError(f"That single sign-on identity is already linked to {other['username']!r}; "
                            "unlink it there first.")
    if not store.set_sso_identity(username, value):
        raise AuthError(f"No user called {username!r}.")
    store.append_event(actor.username, "sso_linked" if value else "sso_unlinked", {"username": username})


def authenticate_sso(store: Store, claims: dict, claim: str = "email") -> User:
    """The active account linked to the identity in ``claims[claim]`` of an OIDC login (the provider
    already checked the person); raise :class:`AuthError` with a readable message otherwise. Accounts
    are never created from a provider's login: an admin creates them, sets the role and links them."""
    raw = claims.get(claim)
    if not isinstance(raw, str) or not raw.strip():
        store.append_event("(unknown user)", "login_failed", {"via": "sso", "reason": f"no {claim} claim"})
        raise AuthError(f"The identity provider did not send the '{claim}' claim that MedSyn uses to find "
                        "your account. Ask IT to check the single sign-on set-up.")
    row = store.user_with_sso(_normalise_identity(raw))
    if row is None or not row["active"]:
        store.append_event(row["username"] if row else "(unknown user)", "login_failed", {"via": "sso"})
        raise AuthError("Single sign-on worked, but no active MedSyn account is linked to your identity. "
                        "Ask a MedSyn admin to create or enable your account and link it on the Users page.")
    store.append_event(row["username"], "login", {"role": row["role"], "via": "sso"})
    return User(row["username"], row["role"])


def load_user(store: Store, username: str) -> User | None:
    """The current account state (role changes and disabling apply at once); None if gone/disabled."""
    row = store.active_user(username)
    return User(row["username"], row["role"]) if row else None


# -- login ----------------------------------------------------------------------------------------
def _keyed(kind: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` under the home folder's secret key (``settings.instance_secret``), hex.
    Stands in for a typed username or a client address in the throttle table and the audit log."""
    return hmac.new(settings.instance_secret(), f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()


def _throttle_key(kind: str, value: str) -> str:
    return f"{kind}:{_keyed(kind, value)[:32]}"


def _lock_for(failures: int, limit: int) -> float:
    """Seconds of lock after ``failures`` failures (0 below ``limit``; 30 s, doubling, up to 15 min)."""
    if failures < limit:
        return 0.0
    return min(LOCK_MAX_S, LOCK_BASE_S * 2 ** (failures - limit))


def lock_remaining_s(store: Store, username: str, now: float | None = None,
                     source: str | None = None) -> float:
    """Seconds until ``username`` (and ``source``, if given) may try again (0 when not locked)."""
    now = time.time() if now is None else now
    keys = [_throttle_key("user", username.strip().lower())]
    if source is not None:
        keys.append(_throttle_key("source", source))
    remaining = 0.0
    for key in keys:
        row = store.throttle_row(key)
        if row is not None:
            remaining = max(remaining, row["locked_until"] - now)
    return remaining


def _count_attempt(store: Store, keys: list[tuple[str, int, bool]], now: float) -> float:
    """In ONE write transaction: read each key's lock, then count this attempt as a failure (withdrawn
    again after a successful login). Parallel attempts therefore queue here and each sees the ones
    before it: no more than ``limit`` guesses are ever checked before the lock. ``keys`` holds
    ``(key, limit, forgets)``, where ``forgets`` drops failures older than :data:`SOURCE_WINDOW_S`.
    Returns the seconds the attempt is still locked for (0: go on and check the password)."""
    with store.transaction("login_throttle"):
        remaining = 0.0
        for key, limit, forgets in keys:
            row = store.throttle_row(key)
            failures, locked_until = (row["failures"], row["locked_until"]) if row else (0, 0.0)
            if row and forgets and locked_until <= now and now - row["last_failure_at"] > SOURCE_WINDOW_S:
                failures = 0
            remaining = max(remaining, locked_until - now)
            failures += 1
            if failures >= limit:
                locked_until = max(locked_until, now + _lock_for(failures, limit))
            store.put_throttle(key, failures, now, locked_until)
    return max(0.0, remaining)


def _withdraw_attempt(store: Store, user_key: str, source_key: str | None) -> None:
    """After a successful login: the username starts afresh, the address's provisional failure is
    taken back (its earlier failures and any lock stay)."""
    with store.transaction("login_throttle"):
        store.delete_throttle(user_key)
        row = store.throttle_row(source_key) if source_key is not None else None
        if row is not None:
            store.put_throttle(source_key, max(row["failures"] - 1, 0), row["last_failure_at"],
                               row["locked_until"])


_dummy_hash_lock = threading.Lock()
_dummy_hash: str | None = None


def _dummy_password_hash() -> str:
    """An argon2id hash of a random password, made once per process with the current parameters: an
    unknown or disabled username is checked against it, so it costs the same time as a real one."""
    global _dummy_hash
    with _dummy_hash_lock:
        if _dummy_hash is None:
            _dummy_hash = _hasher().hash(secrets.token_urlsafe(24))
        return _dummy_hash


def warm_up() -> None:
    """Compute the dummy hash now (the app calls it at start, so no first login pays it)."""
    _dummy_password_hash()


def authenticate(store: Store, username: str, password: str, source: str | None = None) -> User:
    """Check a password; return the :class:`User` or raise :class:`AuthError` with a safe message.

    ``source`` is the client's address as the app sees it (``app_session.client_source``), or None
    (CLI, tests). After :data:`MAX_FAILURES` failures for a username, or
    :data:`MAX_SOURCE_FAILURES` from one address, further attempts are refused for 30 s, doubling per
    further failure up to 15 minutes; while locked even the right password is refused, and refused
    attempts count too. The lock check and the failure count are one transaction, so parallel
    guesses cannot all pass. Unknown, disabled and real usernames take the same time (an argon2
    verify each) and get the same answer. Every attempt is audited: the typed name only if such an
    account exists, else a keyed-hash prefix (``name_hash``), so that repeated attempts on one
    unknown name stay visible without a password typed into the username box reaching the log.
    """
    name = username.strip().lower()
    now = time.time()
    user_key = _throttle_key("user", name)
    source_key = _throttle_key("source", source) if source is not None else None
    keys = [(user_key, MAX_FAILURES, False)]
    if source_key is not None:
        keys.append((source_key, MAX_SOURCE_FAILURES, True))
    remaining = _count_attempt(store, keys, now)
    row = store.user_row(name)
    actor = name if row is not None else "(unknown user)"
    details: dict = {} if row is not None else {"name_hash": _keyed("user", name)[:12]}
    if source is not None:
        details["source"] = source
    if remaining > 0:
        store.append_event(actor, "login_refused_locked", {**details, "retry_after_s": round(remaining)})
        raise AuthError(f"Too many failed logins. Try again in {int(remaining) + 1} s.")
    from argon2.exceptions import InvalidHashError, VerificationError

    real = row is not None and row["active"]
    try:
        ok = _hasher().verify(row["password_hash"] if real else _dummy_password_hash(), password) and real
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        store.append_event(actor, "login_failed", details)
        raise AuthError("Wrong username or password.")
    _withdraw_attempt(store, user_key, source_key)
    if _hasher().check_needs_rehash(row["password_hash"]):
        store.set_password_hash(name, _hasher().hash(password))
    store.append_event(name, "login", {"role": row["role"], **({"source": source} if source else {})})
    return User(name, row["role"])


def logout(store: Store, user: User, reason: str = "logout") -> None:
    store.append_event(user.username, reason, {})


# -- API tokens ------------------------------------------------------------------------------------
#: Every token starts with this, so a leaked one is recognisable (e.g. by secret scanners).
TOKEN_PREFIX = "msy_"
DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS = 30.0, 365.0
_TOKEN = re.compile(r"^msy_[A-Za-z0-9_-]{43}$")
_LABEL = re.compile(r"^[\w .:@/+-]{0,64}$")
#: ``last_used_at`` is written at most this often per token (seconds), not on every request.
TOKEN_TOUCH_S = 60.0


class TokenRefused(AuthError):
    """An API token is missing, unknown, revoked or expired, or its account is disabled (HTTP 401)."""


def _token_hash(secret: str) -> str:
    """SHA-256 of the token: a 256-bit random secret needs no slow hash (nothing to guess), and a fast
    one lets every request be checked by one indexed lookup. The secret itself is never stored."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def create_token(store: Store, actor: User, username: str, label: str = "",
                 days: float = DEFAULT_TOKEN_DAYS) -> tuple[str, dict]:
    """A new API token for ``username``: admins (``manage_users``) for any active account, every user for
    their own. Returns ``(secret, info)``; the secret is shown once and only its hash is stored.
    Expires after ``days`` (at most :data:`MAX_TOKEN_DAYS`). Audited (never the secret)."""
    if actor is not None and not actor.operator and username == actor.username:
        actor = authorise(store, actor, "view_models")  # any role, but the account must still be active
    else:
        actor = authorise(store, actor, "manage_users")
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= MAX_TOKEN_DAYS:
        raise AuthError(f"A token lasts more than 0 and at most {MAX_TOKEN_DAYS:g} days.")
    label = (label or "").strip()
    if not _LABEL.match(label):
        raise AuthError("Token labels are up to 64 letters, digits, spaces or . : @ / + - _ characters.")
    owner = load_user(store, username)
    if owner is None:
        raise AuthError(f"No active account called {username!r}.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = time.time() + float(days) * 86400
    token_id = store.insert_token(owner.username, label, _token_hash(secret), actor.username, expires)
    store.append_event(actor.username, "token_created", {"username": owner.username, "token_id": token_id,
                                                         "label": label, "expires_at": round(expires)})
    return secret, {"id": token_id, "username": owner.username, "label": label, "expires_at": expires}


def authenticate_token(store: Store, secret: str | None) -> User:
    """The current account of an API token; raises :class:`TokenRefused` with a readable reason."""
    if not secret or not _TOKEN.match(secret):
        raise TokenRefused("Missing or malformed API token: send 'Authorization: Bearer msy_…' (a token from "
                           "an admin, `medsyn users token create`, or POST /api/v1/auth/token).")
    row = store.token_by_hash(_token_hash(secret))
    if row is None:
        raise TokenRefused("Unknown API token; ask an admin for a new one.")
    now = time.time()
    if row["revoked_at"] is not None:
        raise TokenRefused(f"API token {row['id']} was revoked; ask an admin for a new one.")
    if row["expires_at"] <= now:
        raise TokenRefused(f"API token {row['id']} expired; ask for a new one.")
    user = load_user(store, row["username"])
    if user is None:
        raise TokenRefused("The account of this API token is disabled or no longer exists.")
    if now - (row["last_used_at"] or 0) > TOKEN_TOUCH_S:
        store.touch_token(row["id"], now)
    return user


def list_tokens(store: Store, actor: User, username: str | None = None) -> list[dict]:
    """Tokens (id, owner, label, created, expiry, revoked, last use; never hashes): admins any account's
    (all with ``username=None``), others their own only."""
    actor = authorise(store, actor, "view_models")
    if not allowed(actor, "manage_users"):
        if username not in (None, actor.username):
            raise PermissionDenied("Not allowed: only admins list other accounts' tokens.")
        username = actor.username
    return store.list_tokens(username)


def revoke_token(store: Store, actor: User, token_id: int) -> None:
    """Revoke a token at once (its owner or an admin; audited)."""
    actor = authorise(store, actor, "view_models")
    row = store.token(token_id)
    if row is None or (row["username"] != actor.username and not allowed(actor, "manage_users")):
        raise PermissionDenied(f"Not allowed: token {token_id} is not yours (or does not exist).")
    if not store.revoke_token(token_id):
        raise AuthError(f"Token {token_id} was already revoked.")
    store.append_event(actor.username, "token_revoked", {"token_id": token_id, "username": row["username"]})
