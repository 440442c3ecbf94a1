"""Test helper for Streamlit's AppTest: an app (or page) run that is already logged in.

``logged_in(path, role)`` creates the account ``test-<role>`` in the test's MedSyn home (random password)
and puts the same server-side session entry a real login puts (``medsyn_core.app_session.login_as``).
The login form itself is exercised in ``tests/test_app.py``.
"""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from medsyn_core.app_session import login_as

ROOT = Path(__file__).resolve().parents[1]


def logged_in(path: str | Path, role: str = "admin", timeout: float = 120) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=timeout)
    login_as(at.session_state, role)
    return at
