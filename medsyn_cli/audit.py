"""``medsyn audit verify`` and ``medsyn audit export --out FILE.csv``.

The CLI runs as whoever can read the database file, i.e. the workstation's operator, so it does not
ask for a MedSyn login; it records its actions in the log as ``cli``.
"""

from __future__ import annotations

import argparse

from medsyn_core.auth import User

#: The workstation operator: no account to re-load (``auth.authorise`` checks only the role).
CLI_USER = User("cli", "admin", operator=True)


def cmd_verify(args: argparse.Namespace) -> int:
    from medsyn_core.audit import verify
    from medsyn_core.storage import Store

    with Store() as store:
        check = verify(store, None, expect_head=args.expect_head)
    print(check.describe())
    if check.ok:
        print(f"Head hash (record it outside this machine to detect a rewritten log): {check.head_hash}")
    return 0 if check.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    from medsyn_core.audit import export_csv
    from medsyn_core.files import atomic_write_text
    from medsyn_core.storage import Store

    if not args.out.lower().endswith(".csv"):
        raise ValueError(f"--out must name a .csv file, got {args.out!r}")
    with Store() as store:
        text = export_csv(store, CLI_USER)
    atomic_write_text(args.out, text)
    print(f"Wrote {text.count(chr(10)) - 1} events to {args.out}")
    return 0


def register(subparsers) -> None:
    audit = subparsers.add_parser("audit", help="verify or export the tamper-evident audit log")
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = sub.add_parser("verify", help="check the hash chain; report the first broken link")
    verify.add_argument("--expect-head", default=None,
                        help="head hash recorded earlier outside this machine; detects a rewritten log")
    verify.set_defaults(func=cmd_verify)
    export = sub.add_parser("export", help="write the whole log (with hashes) as CSV")
    export.add_argument("--out", required=True, help="output .csv file")
    export.set_defaults(func=cmd_export)
