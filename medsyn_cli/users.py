"""``medsyn users create-admin`` (first run, asks for the password twice), ``medsyn users list`` and
``medsyn users token create|list|revoke`` (API tokens for the REST API, docs/api.md).

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


def _when(ts: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def cmd_token_create(args: argparse.Namespace) -> int:
    from medsyn_cli.audit import CLI_USER
    from medsyn_core import auth
    from medsyn_core.storage import Store

    with Store() as store:
        secret, info = auth.create_token(store, CLI_USER, args.username, label=args.label, days=args.days)
    print(f"API token {info['id']} for {info['username']} (expires {_when(info['expires_at'])}); shown once, "
          "only its hash is kept:", file=sys.stderr)
    print(secret)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    import time

    from medsyn_cli.audit import CLI_USER
    from medsyn_core import auth
    from medsyn_core.storage import Store

    with Store() as store:
        rows = auth.list_tokens(store, CLI_USER, args.user)
    now = time.time()
    print(f"{'id':>5}  {'user':<16} {'label':<20} {'expires':<16} {'last used':<16} state")
    for t in rows:
        state = "revoked" if t["revoked_at"] else ("expired" if t["expires_at"] < now
                                                   else "active")
        print(f"{t['id']:>5}  {t['username']:<16} {t['label'][:20]:<20} {_when(t['expires_at']):<16} "
              f"{_when(t['last_used_at']):<16} {state}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from medsyn_cli.audit import CLI_USER
    from medsyn_core import auth
    from medsyn_core.storage import Store

    with Store() as store:
        auth.revoke_token(store, CLI_USER, args.token_id)
    print(f"Revoked API token {args.token_id}.")
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
    token = sub.add_parser("token", help="API tokens for the REST API: create (shown once), list, revoke")
    tsub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    p = tsub.add_parser("create", help="create a token for an account and print it (only its hash is kept)")
    p.add_argument("username")
    p.add_argument("--label", default="", help="what the token is for, e.g. 'nightly refresh'")
    p.add_argument("--days", type=float, default=30.0, help="days until it expires (default 30, at most 365)")
    p.set_defaults(func=cmd_token_create)
    p = tsub.add_parser("list", help="tokens (never the secrets): owner, label, expiry, last use, state")
    p.add_argument("--user", default=None, help="only this account's tokens")
    p.set_defaults(func=cmd_token_list)
    p = tsub.add_parser("revoke", help="revoke a token at once")
    p.add_argument("token_id", type=int)
    p.set_defaults(func=cmd_token_revoke)
