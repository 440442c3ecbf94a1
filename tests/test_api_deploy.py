"""deploy/start.sh (the Docker image's command, ``make serve``): one command starts the app and the API,
both answer their health checks, and stopping it stops both."""

import os
import signal
import subprocess
import sys
import time

import httpx
from api_server import ROOT, free_port


def test_start_script_serves_app_and_api_and_stops_both(tmp_path):
    api_port, app_port = free_port(), free_port()
    env = {**os.environ, "MEDSYN_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT),
           "MEDSYN_API_PORT": str(api_port), "MEDSYN_APP_PORT": str(app_port), "PYTHON": sys.executable}
    env.pop("MEDSYN_DATABASE_URL", None)
    proc = subprocess.Popen([str(ROOT / "deploy" / "start.sh")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        ready = app = None
        deadline = time.time() + 120
        while time.time() < deadline and not (ready == 200 and app == 200):
            time.sleep(0.5)
            try:
                ready = httpx.get(f"http://127.0.0.1:{api_port}/ready", timeout=2).status_code
                app = httpx.get(f"http://127.0.0.1:{app_port}/_stcore/health", timeout=2).status_code
            except httpx.HTTPError:
                continue
        assert (ready, app) == (200, 200)
        assert httpx.get(f"http://127.0.0.1:{api_port}/health").json() == {"status": "ok"}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(60)
    for port in (api_port, app_port):  # both are gone
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            raise AssertionError(f"port {port} still answers")
        except httpx.ConnectError:
            pass
