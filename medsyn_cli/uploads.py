"""``medsyn uploads list|purge [--older-than DAYS]``: the uploaded real files kept in the home folder.

Like ``medsyn audit`` and ``medsyn jobs``, the CLI acts as the workstation's operator (whoever can read
the database file) and records its deletions in the audit log as ``cli``. Uploads read by a queued or
running job are never deleted. See :mod:`medsyn_core.uploads` for when MedSyn deletes them by itself.
"""

from __future__ import annotations

import argparse
import time

from medsyn_cli.audit import CLI_USER


def _age(ts: float) -> str:
    days = (time.time() - ts) / 86400
    return f"{days:.1f} d" if days >= 1 else f"{days * 24:.1f} h"


def cmd_list(args: argparse.Namespace) -> int:
    from medsyn_core import uploads
    from medsyn_core.storage import Store

    with Store() as store:
        entries = uploads.list_uploads(store, CLI_USER)
    if not entries:
        print("No uploaded files are kept.")
        return 0
    print(f"{'upload':<34} {'bytes':>10} {'age':>8}  {'jobs':<10} state")
    for e in entries:
        jobs = ",".join(map(str, e.jobs)) or "-"
        print(f"{e.id:<34} {e.size:>10} {_age(e.modified):>8}  {jobs:<10} {e.state}")
    print(f"{len(entries)} file(s) in {uploads.uploads_dir()} (readable by the service account only).")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from medsyn_core import uploads
    from medsyn_core.storage import Store

    if args.older_than is not None and args.older_than < 0:
        raise ValueError("--older-than must be zero or more days.")
    with Store() as store:
        deleted = uploads.purge(store, CLI_USER, args.older_than)
        left = uploads.list_uploads(store, CLI_USER)
    for e in deleted:
        print(f"deleted {e.id} ({e.size} bytes; {e.state})")
    busy = sum(e.in_use for e in left)
    print(f"Deleted {len(deleted)} upload(s); {len(left)} left"
          + (f" ({busy} in use by a queued or running job)" if busy else "") + ".")
    return 0


def register(subparsers) -> None:
    group = subparsers.add_parser("uploads", help="list or delete uploaded real files kept here")
    sub = group.add_subparsers(dest="uploads_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="kept uploads: size, age, jobs, why each is kept")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("purge", help="delete every upload no queued or running job reads (audited)")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="only uploads last written more than DAYS days ago")
    p.set_defaults(func=cmd_purge)
