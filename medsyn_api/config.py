"""Settings of the REST API, read from the environment when the app is built (docs/api.md lists them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name} must be a positive whole number, not {os.environ[name]!r}; fix or unset "
                         "it.")
    return value


@dataclass(frozen=True)
class ApiConfig:
    """``cors_origins``: browser origins allowed to call the API (none by default: CORS off).
    ``max_json_bytes``: largest non-upload request body. ``max_upload_bytes``: largest uploaded table
    (default: the table limit, ``MEDSYN_MAX_TABLE_BYTES``). ``login_attempts`` per ``login_window_s``
    seconds from one client address on the token endpoints (beyond the account throttle of
    :func:`medsyn_core.auth.authenticate`). ``token_days``: default and maximum life of a token made by
    logging in through the API. ``trusted_proxies``: addresses whose ``X-Forwarded-For`` is believed."""

    cors_origins: tuple[str, ...] = ()
    max_json_bytes: int = 1 << 20
    max_upload_bytes: int = 512 * 2**20
    login_attempts: int = 10
    login_window_s: int = 60
    token_days: float = 1.0
    max_token_days: float = 30.0
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_env(cls) -> ApiConfig:
        from medsyn_core.limits import MAX_TABLE_BYTES

        origins = tuple(o.strip() for o in os.environ.get("MEDSYN_API_CORS_ORIGINS", "").split(",")
                        if o.strip())
        proxies = tuple(o.strip() for o in os.environ.get("MEDSYN_API_TRUSTED_PROXIES", "").split(",")
                        if o.strip())
        return cls(cors_origins=origins,
                   max_json_bytes=_int("MEDSYN_API_MAX_JSON_BYTES", 1 << 20),
                   max_upload_bytes=_int("MEDSYN_API_MAX_UPLOAD_BYTES", MAX_TABLE_BYTES.value()),
                   login_attempts=_int("MEDSYN_API_LOGIN_ATTEMPTS", 10),
                   login_window_s=_int("MEDSYN_API_LOGIN_WINDOW_S", 60),
                   trusted_proxies=proxies)
