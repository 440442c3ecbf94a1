"""File permissions of a MedSyn process: private umask at start, home-folder check and tightening.

Every entry point (the Streamlit app, the ``medsyn`` CLI and each background-job process) calls
:func:`secure_process` first: it sets the umask to 077, so whatever a library writes for MedSyn
(SQLite's WAL, ``torch.save``, pydicom, safetensors, zip files) is 0600 and its folders 0700, and
:mod:`medsyn_core.files` writes 0600/0700 whatever the umask. :func:`check_home` reports a home folder
that group or others can enter, and :func:`tighten_home` removes group/other access from everything
inside it (MedSyn created all of it: database, uploads, jobs, checkpoints, models, reports).
Details: docs/security.md, "Files at rest".
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from medsyn_core import settings

PRIVATE_UMASK = 0o077
#: Permission bits that let other local accounts read, write or enter.
GROUP_OTHER = stat.S_IRWXG | stat.S_IRWXO


@dataclass(frozen=True)
class HomeCheck:
    """The home folder's mode and what was tightened inside it."""

    path: Path
    mode: int
    tightened: int   # files and folders inside whose group/other bits were removed

    @property
    def open_to_others(self) -> bool:
        return bool(self.mode & GROUP_OTHER)

    def warning(self, with_path: bool = True) -> str | None:
        """A readable warning when group/others can use the home folder (None when private).
        ``with_path=False`` leaves the server path out (for the app's sidebar)."""
        if not self.open_to_others:
            return None
        where = f"the MedSyn home folder {self.path}" if with_path else "the MedSyn home folder"
        fix = f"chmod 700 {self.path}" if with_path else "chmod 700 on it (the path is in the server log)"
        return (f"Other local accounts can open {where} (mode {self.mode & 0o777:04o}). MedSyn keeps its "
                f"own files inside private (0600/0700), but run `{fix}` so that nobody else can list it.")


def secure_process() -> None:
    """Make everything this process creates private to its account (umask 077). Call at the start of
    the app, the CLI and job processes; child processes inherit it."""
    os.umask(PRIVATE_UMASK)


def tighten_home(home: Path) -> int:
    """Remove group/other bits from every file and folder under ``home`` (not ``home`` itself, which
    the operator may have created). Returns how many were changed; unreadable entries are skipped."""
    changed = 0
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            path = os.path.join(root, name)
            try:
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode) or not mode & GROUP_OTHER:
                    continue
                os.chmod(path, stat.S_IMODE(mode) & ~GROUP_OTHER)
                changed += 1
            except OSError:
                continue
    return changed


def check_home(tighten: bool = True) -> HomeCheck | None:
    """Check the home folder (None if it does not exist yet) and, by default, tighten what is inside."""
    home = settings.home_dir(create=False)
    try:
        mode = stat.S_IMODE(home.stat().st_mode)
    except FileNotFoundError:
        return None
    changed = tighten_home(home) if tighten else 0
    return HomeCheck(home, mode, changed)


def start_service(stream=sys.stderr) -> HomeCheck | None:
    """:func:`secure_process`, then :func:`check_home`; prints the warning and what was tightened to
    ``stream`` (the CLI's stderr, the app's server log). Returns the check for the app's sidebar."""
    secure_process()
    check = check_home()
    if check is not None and stream is not None:
        if check.tightened:
            print(f"medsyn: made {check.tightened} files/folders in {check.path} private to this account",
                  file=stream)
        if (text := check.warning()) is not None:
            print(f"medsyn: warning: {text}", file=stream)
    return check
