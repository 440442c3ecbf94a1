"""Test helper for Streamlit's AppTest: an app (or page) run that is already logged in.

``logged_in(path, role)`` creates the account ``test-<role>`` in the test's MedSyn home (random password)
and puts the same server-side session entry a real login puts (``app_session.SESSION_KEY``).
The login form itself is exercised in ``tests/test_app.py``.
"""

import secrets
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from medsyn_app.session import SESSION_KEY
from medsyn_core import auth
from medsyn_core.storage import Store

ROOT = Path(__file__).resolve().parents[1]


def logged_in(path: str | Path, role: str = "admin", timeout: float = 120) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=timeout)
    login_as(at.session_state, role)
    return at


def account(username: str, role: str) -> auth.User:
    """The account ``username`` in the test's MedSyn home, created (random password) if missing.
    Library entry points re-load the account from the store, so a bare ``User`` object is not enough."""
    with Store() as store:
        user = auth.load_user(store, username)
        if user is None:
            auth._insert_user(store, username, secrets.token_urlsafe(16), role)
            user = auth.User(username, role)
    return user


def login_as(session_state, role: str, username: str | None = None) -> auth.User:
    """Create ``username`` (default ``test-<role>``, random password) if missing and log it in."""
    user = account(username or f"test-{role}", role)
    session_state[SESSION_KEY] = {"username": user.username, "last_seen": time.time()}
    return user


def finish_job(job_id: int, timeout: float = 300) -> dict:
    """Run the background worker's loop (what app.py's JobWorker does) until job ``job_id`` ends."""
    from medsyn_core import jobs

    deadline = time.time() + timeout
    procs = []
    with Store() as store:
        while time.time() < deadline:
            procs = [p for p in procs if p.poll() is None] + jobs.tick(store)
            job = jobs.get_job(store, job_id)
            if job["status"] in jobs.TERMINAL:
                for p in procs:  # also a job the last tick started meanwhile: give it the time left
                    p.wait(max(30.0, deadline - time.time()))
                return job
            time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
