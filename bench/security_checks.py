"""File permissions after a full MedSyn cycle: prints the mode of every file and folder MedSyn wrote and
fails if any is readable, writable or enterable by group or others.

The cycle runs under umask 022 (what a service started from a login shell has, and what made uploads,
the database and models 0644 before issue 20) in a fresh home folder and output folder:

1. ``medsyn users create-admin`` (the database, its WAL/SHM) and a login (the secret key);
2. the app's path for tabular training: an upload saved by ``fit_job.save_upload`` and a ``tabular-fit``
   job submitted with ``jobs.submit``, run by ``medsyn jobs worker --once`` in a job process
   (job folder, worker log, checkpoint, model in the store);
3. ``medsyn tabular sample`` of that model to a CSV, ``medsyn tabular fit`` to a model folder outside
   the home folder;
4. ``medsyn imaging sample demo`` as DICOM and PNG (tiny image exports);
5. ``medsyn audit export``.

Run: ``.venv/bin/python bench/security_checks.py [--keep]`` (about a minute on 2 CPU cores). The slow
test ``tests/test_platform_security.py::test_security_checks_bench_cycle_leaves_nothing_readable_by_others``
runs it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's MedSyn, not an installed one
ADMIN_PW = "bench-admin-password-1"


def run_cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    """``medsyn ARGS`` as a separate process (the real entry point); returns its stdout."""
    proc = subprocess.run([sys.executable, "-m", "medsyn_cli.main", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"medsyn {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def cycle(home: Path, out: Path) -> None:
    """Train, sample and export through the CLI and the job worker, in ``home`` and ``out``."""
    env = dict(os.environ, MEDSYN_HOME=str(home), MEDSYN_DEVICE="cpu", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))
    env.pop("MEDSYN_ADMIN_PASSWORD", None)
    os.environ.update(MEDSYN_HOME=str(home), MEDSYN_DEVICE="cpu")
    run_cli(["users", "create-admin", "--password-stdin"], env, stdin=ADMIN_PW + "\n")

    from medsyn_core import auth, jobs
    from medsyn_core.storage import Store
    from medsyn_tabular.fit_job import save_upload

    with Store() as store:  # what the Tabular page does when a researcher uploads a table and trains
        admin = auth.load_user(store, "admin")
        rita = auth.create_user(store, admin, "rita", "bench-rita-password", "researcher")
        auth.authenticate(store, "rita", "bench-rita-password", source="local")  # the throttle's key file
        data = save_upload((ROOT / "data" / "tabular" / "heart_cleveland.csv").read_bytes(), "heart.csv")
        job_id = jobs.submit(store, rita, "tabular-fit", {
            "data_path": str(data), "source": "heart", "name": "bench-heart", "model": "tvae", "epochs": 3,
            "batch_size": 100, "seed": 0, "schema": None, "phi_actions": None, "privacy": {},
            "checkpoint_every_s": 0})
    run_cli(["jobs", "worker", "--once"], env)
    with Store() as store:
        job = jobs.get_job(store, job_id)
    if job["status"] != "finished":
        raise RuntimeError(f"the training job ended {job['status']}: {job['error']}")
    model = job["result"]["model_path"]
    run_cli(["tabular", "sample", model, "-n", "100", "--out", str(out / "synthetic.csv")], env)
    run_cli(["tabular", "fit", str(ROOT / "data" / "tabular" / "heart_cleveland.csv"), "--model", "tvae",
             "--epochs", "1", "--batch-size", "100", "--quiet", "--out", str(out / "cli-model")], env)
    run_cli(["imaging", "sample", "demo", "-n", "4", "--format", "dicom", "--out", str(out / "dicom")], env)
    run_cli(["imaging", "sample", "demo", "-n", "4", "--format", "png", "--out", str(out / "png")], env)
    run_cli(["audit", "export", "--out", str(out / "audit.csv")], env)


def modes(root: Path) -> list[tuple[Path, int]]:
    """(path, permission bits) of ``root``'s contents, folders included."""
    return [(p, stat.S_IMODE(p.lstat().st_mode)) for p in sorted(root.rglob("*"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    os.umask(0o022)
    base = Path(tempfile.mkdtemp(prefix="medsyn-perms-"))
    home, out = base / "home", base / "exports"
    out.mkdir(mode=0o700)
    started = time.time()
    try:
        cycle(home, out)
        from medsyn_core.storage import Store

        offenders = []
        held = Store()  # an open connection, so that the WAL and SHM files are there to be listed
        for label, root in (("home folder", home), ("outputs", out)):
            entries = modes(root)
            print(f"{label}: {root} ({stat.S_IMODE(root.stat().st_mode):04o}), {len(entries)} entries")
            for path, mode in entries:
                kind = "d" if path.is_dir() else "f"
                print(f"  {mode:04o} {kind} {path.relative_to(root)}")
                if mode & 0o077:
                    offenders.append(f"{mode:04o} {path}")
        held.close()
        print(f"cycle took {time.time() - started:.0f} s")
        if offenders:
            print("READABLE BY GROUP OR OTHERS:\n  " + "\n  ".join(offenders))
            return 1
        print("OK: no file or folder is readable by group or others")
        return 0
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
