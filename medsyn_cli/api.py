"""``medsyn api``: serve the REST API (docs/api.md) with uvicorn, plus a background-job worker.

    medsyn api [--host 127.0.0.1] [--port 8000] [--workers 1] [--no-worker]

By default it listens on localhost only: put it behind the reverse proxy with TLS of
``deploy/nginx.conf`` to serve other machines. Several API processes (``--workers``, or several hosts
on one PostgreSQL store) may run at once: each runs a job worker, and job claiming is safe between them.
"""

from __future__ import annotations

import argparse


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from medsyn_core import auth, jobs
    from medsyn_core.storage import Store

    if args.port < 1 or args.port > 65535:
        raise ValueError(f"--port must be between 1 and 65535, not {args.port}.")
    with Store() as store:  # migrate (once) before the workers start, and warm the password hasher
        auth.ensure_admin_from_env(store)
        print(f"MedSyn API on http://{args.host}:{args.port} (docs at /docs; store: {store.describe()})")
    auth.warm_up()
    worker = None if args.no_worker else jobs.JobWorker().start()
    try:
        uvicorn.run("medsyn_api.app:app", host=args.host, port=args.port, workers=args.workers,
                    proxy_headers=False, server_header=False, log_level=args.log_level)
    finally:
        if worker is not None:
            worker.stop()
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("api", help="serve the REST API (uvicorn) and run a background-job worker")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this "
                                                     "machine only; use a TLS reverse proxy for others)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    p.add_argument("--no-worker", action="store_true",
                   help="do not run a job worker in this process (another process runs one)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=cmd_api)
