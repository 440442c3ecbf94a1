"""Secrets that belong to one MedSyn home folder and never leave it.

Each secret is 32 bytes from the operating system's entropy pool, created on first use in
``$MEDSYN_HOME/keys/<purpose>.key`` (folder 0700, file 0600, created exclusively so that two processes
agree on one key) and read back afterwards. Values derived from a key (e.g. the Safe Harbor date shift) are
the same for every fit in this home folder, so refits stay consistent, while nothing that is shared (model
folders, cards, seeds, exports) holds the key or lets anyone recompute the derived value.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
from pathlib import Path

from medsyn_core import settings

KEY_BYTES = 32
_PURPOSE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
#: Safe Harbor date shift: at most this many days either way (public; the offset itself is secret).
MAX_DATE_SHIFT_DAYS = 365


def keys_dir() -> Path:
    path = settings.home_dir() / "keys"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def home_key(purpose: str) -> bytes:
    """The secret key for ``purpose`` of this home folder, created from OS entropy on first use."""
    if not _PURPOSE.match(purpose):
        raise ValueError(f"Invalid key purpose {purpose!r}.")
    path = keys_dir() / f"{purpose}.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) != KEY_BYTES:
            raise RuntimeError(f"The key file {path} is damaged ({len(data)} bytes). Restore it from a "
                               "backup, "
                               "or delete it to start a new key (date shifts will then change).") from None
        return data
    key = os.urandom(KEY_BYTES)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return key


def derive_int(purpose: str, label: str, low: int, high: int) -> int:
    """A whole number in [low, high] derived from this home's ``purpose`` key and ``label`` (HMAC-SHA256;
    the same inputs give the same number in this home folder, a different one elsewhere)."""
    if high < low:
        raise ValueError("high must be at least low")
    digest = hmac.new(home_key(purpose), label.encode("utf-8"), hashlib.sha256).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low + 1)


def date_shift_days() -> int:
    """The secret Safe Harbor date shift of this home folder, in days, within ±MAX_DATE_SHIFT_DAYS."""
    return derive_int("date-shift", "safe-harbor-date-shift", -MAX_DATE_SHIFT_DAYS, MAX_DATE_SHIFT_DAYS)
