"""Local accounts, roles and the permission check used by pages, library entry points and the CLI.

Passwords are hashed with argon2id (``argon2-cffi``, memory-hard); the hash lives only in the ``users``
table and is never returned, shown or logged. Roles:

* ``clinician`` — preview, sample and export synthetic data from existing models;
* ``researcher`` — also upload real data, change privacy settings, train and evaluate;
* ``admin`` — everything, plus user management, the audit log and deleting models.

:func:`require` is THE check: pages call it before rendering controls and library entry points call it
again before acting, so hiding a widget is never the only protection. Repeated failed logins for a
username are throttled (persisted in ``login_failures``, so a restart does not reset them).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

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
    "view_audit": frozenset({"admin"}),
    "delete_model": frozenset({"admin"}),
    "manage_uploads": frozenset({"admin"}),
}

#: Readable names of actions for refusal messages.
ACTION_TEXT: dict[str, str] = {
    "view_models": "view models", "view_images": "view images", "sample": "sample synthetic data",
    "export": "export synthetic data", "upload_real_data": "upload real patient data",
    "change_privacy": "change privacy settings", "train": "train models", "evaluate": "run evaluations",
    "run_example_job": "run background jobs", "manage_users": "manage users",
    "view_audit": "view the audit log", "delete_model": "delete models",
    "manage_uploads": "manage uploaded real data",
}

ADMIN_PASSWORD_ENV = "MEDSYN_ADMIN_PASSWORD"
SESSION_TIMEOUT_ENV = "MEDSYN_SESSION_TIMEOUT_MIN"
DEFAULT_SESSION_TIMEOUT_S = 30 * 60
#: Failures allowed before a username is locked; the lock doubles with each further failure.
MAX_FAILURES = 5
LOCK_BASE_S = 30.0
LOCK_MAX_S = 15 * 60.0
MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")


class AuthError(ValueError):
    """Login refused or bad account input; the message is safe to show (no hashes, no passwords)."""

    value_free_message = True


class PermissionDenied(PermissionError):
    """The user's role does not allow the action."""

    value_free_message = True


@dataclass(frozen=True)
class User:
    """A logged-in account (never carries the password hash)."""

    username: str
    role: str

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
    return name


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.")


def has_users(store: Store) -> bool:
    return store._conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None


def _insert_user(store: Store, username: str, password: str, role: str) -> User:
    name = _check_username(username)
    _check_password(password)
    if role not in ROLES:
        raise AuthError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    if store._conn.execute("SELECT 1 FROM users WHERE username=?", (name,)).fetchone():
        raise AuthError(f"The user {name!r} already exists; choose another name.")
    store._conn.execute(
        "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
        (name, _hasher().hash(password), role, time.time()),
    )
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


def ensure_admin_from_env(store: Store, username: str = "admin") -> User | None:
    """On first run, create the admin from ``$MEDSYN_ADMIN_PASSWORD`` if set; None if nothing to do."""
    password = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if not password or has_users(store):
        return None
    return create_first_admin(store, username, password, via="environment")


def create_user(store: Store, actor: User, username: str, password: str, role: str) -> User:
    """Admin creates an account (audited: who created which username with which role)."""
    require(actor, "manage_users")
    user = _insert_user(store, username, password, role)
    store.append_event(actor.username, "user_created", {"username": user.username, "role": role})
    return user


def set_role(store: Store, actor: User, username: str, role: str) -> None:
    """Admin changes a role (audited). The last active admin cannot be demoted."""
    require(actor, "manage_users")
    if role not in ROLES:
        raise AuthError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    row = store._conn.execute("SELECT role FROM users WHERE username=?", (username,)).fetchone()
    if row is None:
        raise AuthError(f"No user called {username!r}.")
    if row["role"] == "admin" and role != "admin" and _count_admins(store) <= 1:
        raise AuthError("This is the last admin; make another admin first.")
    store._conn.execute("UPDATE users SET role=? WHERE username=?", (role, username))
    store.append_event(actor.username, "role_changed", {"username": username, "from": row["role"],
                                                        "to": role})


def set_active(store: Store, actor: User, username: str, active: bool) -> None:
    """Admin disables or re-enables an account (audited)."""
    require(actor, "manage_users")
    if not active and username == actor.username:
        raise AuthError("You cannot disable your own account.")
    cur = store._conn.execute("UPDATE users SET active=? WHERE username=?", (int(active), username))
    if cur.rowcount == 0:
        raise AuthError(f"No user called {username!r}.")
    store.append_event(actor.username, "user_enabled" if active else "user_disabled",
                       {"username": username})


def _count_admins(store: Store) -> int:
    return store._conn.execute("SELECT COUNT(*) FROM users WHERE role='admin' AND active=1").fetchone()[0]


def list_users(store: Store, actor: User) -> list[dict]:
    """Usernames, roles, state and single sign-on link (never the hashes)."""
    require(actor, "manage_users")
    rows = store._conn.execute("SELECT username, role, active, sso_identity, created_at FROM users "
                               "ORDER BY username")
    return [dict(r) for r in rows]


def _normalise_identity(identity: str) -> str:
    return identity.strip().lower()


def set_sso_identity(store: Store, actor: User, username: str, identity: str | None) -> None:
    """Admin links ``username`` to the identity the OIDC provider asserts (e.g. its e-mail claim), or
    removes the link with ``None``/empty (audited; the identity itself is not written to the log)."""
    require(actor, "manage_users")
    value = _normalise_identity(identity) if identity and identity.strip() else None
    if value is not None:
        other = store._conn.execute("SELECT username FROM users WHERE sso_identity=? AND username<>?",
                                    (value, username)).fetchone()
        if other is not None:
            raise AuthError(f"That single sign-on identity is already linked to {other['username']!r}; "
                            "unlink it there first.")
    cur = store._conn.execute("UPDATE users SET sso_identity=? WHERE username=?", (value, username))
    if cur.rowcount == 0:
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
    row = store._conn.execute("SELECT username, role, active FROM users WHERE sso_identity=?",
                              (_normalise_identity(raw),)).fetchone()
    if row is None or not row["active"]:
        store.append_event(row["username"] if row else "(unknown user)", "login_failed", {"via": "sso"})
        raise AuthError("Single sign-on worked, but no active MedSyn account is linked to your identity. "
                        "Ask a MedSyn admin to create or enable your account and link it on the Users page.")
    store.append_event(row["username"], "login", {"role": row["role"], "via": "sso"})
    return User(row["username"], row["role"])


def load_user(store: Store, username: str) -> User | None:
    """The current account state (role changes and disabling apply at once); None if gone/disabled."""
    row = store._conn.execute("SELECT username, role FROM users WHERE username=? AND active=1",
                              (username,)).fetchone()
    return User(row["username"], row["role"]) if row else None


# -- login ----------------------------------------------------------------------------------------
def lock_remaining_s(store: Store, username: str, now: float | None = None) -> float:
    """Seconds until ``username`` may try again (0 when not locked)."""
    row = store._conn.execute("SELECT locked_until FROM login_failures WHERE username=?",
                              (username.strip().lower(),)).fetchone()
    now = time.time() if now is None else now
    return max(0.0, row["locked_until"] - now) if row else 0.0


def _record_failure(store: Store, name: str, now: float) -> None:
    row = store._conn.execute("SELECT failures FROM login_failures WHERE username=?", (name,)).fetchone()
    failures = (row["failures"] if row else 0) + 1
    locked_until = 0.0
    if failures >= MAX_FAILURES:
        locked_until = now + min(LOCK_MAX_S, LOCK_BASE_S * 2 ** (failures - MAX_FAILURES))
    store._conn.execute(
        """INSERT INTO login_failures (username, failures, last_failure_at, locked_until)
           VALUES (?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET failures=excluded.failures,
           last_failure_at=excluded.last_failure_at, locked_until=excluded.locked_until""",
        (name, failures, now, locked_until),
    )


def authenticate(store: Store, username: str, password: str) -> User:
    """Check a password; return the :class:`User` or raise :class:`AuthError` with a safe message.

    After :data:`MAX_FAILURES` failures for a username, it is locked for 30 s, doubling per further
    failure up to 15 minutes; while locked even the right password is refused. Every attempt is
    audited (the typed name only if such an account exists, so a password typed into the username
    box never reaches the log).
    """
    name = username.strip().lower()
    now = time.time()
    remaining = lock_remaining_s(store, name, now)
    row = store._conn.execute("SELECT username, password_hash, role, active FROM users WHERE username=?",
                              (name,)).fetchone()
    known = name if row is not None else "(unknown user)"
    if remaining > 0:
        store.append_event(known, "login_refused_locked", {"retry_after_s": round(remaining)})
        raise AuthError(f"Too many failed logins for this account. Try again in {int(remaining) + 1} s.")
    ok = False
    if row is not None and row["active"]:
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            ok = _hasher().verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            ok = False
    if not ok:
        _record_failure(store, name, now)
        store.append_event(known, "login_failed", {})
        raise AuthError("Wrong username or password.")
    store._conn.execute("DELETE FROM login_failures WHERE username=?", (name,))
    if _hasher().check_needs_rehash(row["password_hash"]):
        store._conn.execute("UPDATE users SET password_hash=? WHERE username=?",
                            (_hasher().hash(password), name))
    store.append_event(name, "login", {"role": row["role"]})
    return User(name, row["role"])


def logout(store: Store, user: User, reason: str = "logout") -> None:
    store.append_event(user.username, reason, {})
