"""``medsyn users create-admin`` (first run, asks for the password twice) and ``medsyn users list``.

Other accounts are created by an admin on the app's Users page (audited with the admin's name).
"""

from __future__ import annotations

import argparse
import getpass
import sys


def cmd_create_admin(args: argparse.Namespace) -> int:
    from medsyn_core import auth
    from medsyn_core.storage import Store

    with Store() as store:
        if auth.has_users(store):
            raise ValueError("Accounts already exist; the first-run admin set-up is closed. "
                             "An admin can create more accounts on the app's Users page.")
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password for the new admin {args.username!r}: ")
            if password != getpass.getpass("Repeat the password: "):
                raise ValueError("The two passwords differ; nothing was created. Run the command again.")
        user = auth.create_first_admin(store, args.username, password, via="cli")
    print(f"Created the admin account {user.username!r}. Log in to the app with it.")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from medsyn_cli.audit import CLI_USER
    from medsyn_core import auth
    from medsyn_core.storage import Store

    with Store() as store:
        for row in auth.list_users(store, CLI_USER):
            print(f"{row['username']:<24} {row['role']:<11} {'active' if row['active'] else 'disabled'}")
    return 0


def register(subparsers) -> None:
    users = subparsers.add_parser("users", help="first-run admin account and the list of accounts")
    sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    create = sub.add_parser("create-admin", help="create the first admin (only when no account exists)")
    create.add_argument("--username", default="admin")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input instead of prompting")
    create.set_defaults(func=cmd_create_admin)
    lst = sub.add_parser("list", help="usernames, roles and whether they are active")
    lst.set_defaults(func=cmd_list)
