"""``medsyn federated certs|server|client|simulate``: federated synthesis across sites with Flower.

    medsyn federated certs --out DIR [--host NAME_OR_IP ...] [--site PSEUDONYM ...] [--days N]
    medsyn federated server --config fed.yaml [--replace]
    medsyn federated client --server HOST:PORT --data FILE --site NAME --ca ca.crt
                            (--token-file FILE | $MEDSYN_FEDERATION_TOKEN | --token TOKEN)
                            [--epsilon E] [--public-rows]
    medsyn federated simulate DATA --metadata schema.yaml [--sites 3] [--split iid|by-column=COL]
                              [--model ctgan|tvae] [--rounds R] [--local-epochs E] [--epsilon E]

Step by step for two machines: docs/federated.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

TOKEN_ENV = "MEDSYN_FEDERATION_TOKEN"


def _user_errors(func):
    """Readable one-line errors for a federation that cannot start or run (FederationError)."""
    import functools

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from medsyn_cli.main import UserError
        from medsyn_federated.runner import FederationError

        try:
            return func(args)
        except FederationError as exc:
            raise UserError(str(exc)) from exc

    return wrapper


@_user_errors
def cmd_certs(args: argparse.Namespace) -> int:
    from medsyn_core.files import atomic_write_text
    from medsyn_federated import certs, runner, tokens

    out = Path(args.out)
    hosts = args.host or list(certs.DEFAULT_HOSTS)
    if args.sites_only and not args.site:
        from medsyn_cli.main import UserError

        raise UserError("--sites-only needs at least one --site PSEUDONYM.")
    files = None if args.sites_only else certs.make_certificates(out, hosts=hosts, days=args.days,
                                                                  overwrite=args.overwrite)
    if files is not None:
        print(f"CA certificate (give it to every site):   {files.ca_cert}")
        print(f"Server certificate and key (server only): {files.server_cert}, {files.server_key}")
        print(f"CA key (keep offline, 0600):              {files.ca_key}")
        print(f"The server certificate is valid for: {', '.join(hosts)}")
    if args.site:
        new = {s: tokens.new_token() for s in args.site}
        keys = {s: tokens.public_key_openssh(t).decode() for s, t in new.items()}
        sites_file = runner.write_sites_file(out / "sites.yaml", keys)
        print(f"Site public keys (server only, public): {sites_file}")
        for site, token in new.items():
            path = atomic_write_text(out / "tokens" / f"{site}.token", token + "\n")
            print(f"Token of {site} (secret; hand it to the site over a separate channel): {path}")
    return 0


@_user_errors
def cmd_server(args: argparse.Namespace) -> int:
    from medsyn_cli.audit import CLI_USER
    from medsyn_federated import runner

    status = runner.run_server(args.config, user=CLI_USER, replace=args.replace,
                               on_line=lambda line: print(line, flush=True))
    print(f"Federation finished after {status['round']} round(s); model saved in {status['model_path']}")
    return 0


def _token(args: argparse.Namespace) -> str:
    from medsyn_cli.main import UserError

    if args.token_file:
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if args.token:
        return args.token
    raise UserError(f"Give this site's token: --token-file FILE (safest), ${TOKEN_ENV}, or --token.")


@_user_errors
def cmd_client(args: argparse.Namespace) -> int:
    from medsyn_cli.audit import CLI_USER
    from medsyn_federated import runner

    runner.run_client(args.server, args.data, args.site, _token(args), args.ca, user=CLI_USER,
                      epsilon=args.epsilon, public_rows=args.public_rows,
                      on_line=lambda line: print(line, flush=True))
    return 0


@_user_errors
def cmd_simulate(args: argparse.Namespace) -> int:
    from medsyn_cli.audit import CLI_USER
    from medsyn_federated import simulate

    hyper = {}
    for item in args.param or []:
        key, _, value = item.partition("=")
        hyper[key.strip()] = _parse_value(value)
    quiet = (lambda line: None) if not args.verbose else (lambda line: print(line, file=sys.stderr))
    result = simulate.simulate(args.data, args.metadata, user=CLI_USER, sites=args.sites, split=args.split,
                               model=args.model, rounds=args.rounds, local_epochs=args.local_epochs,
                               batch_size=args.batch_size, hyperparameters=hyper, epsilon=args.epsilon,
                               seed=args.seed, name=args.name, replace=args.replace, strategy=args.strategy,
                               on_line=quiet)
    print(result.summary())
    print(f"Federated model saved in {result.model_path}")
    if args.json:
        from medsyn_core.files import atomic_write_text

        atomic_write_text(args.json, simulate.result_json(result))
    return 0


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def register(subparsers) -> None:
    fed = subparsers.add_parser("federated", help="federated synthesis across sites (Flower)",
                                description="Train one generator on several sites' data without moving a "
                                            "record (Flower; docs/federated.md).")
    sub = fed.add_subparsers(dest="federated_command", metavar="COMMAND", required=True)

    p = sub.add_parser("certs", help="make a CA, the server's TLS certificate and site tokens")
    p.add_argument("--out", required=True, help="folder for ca.crt, server.pem/.key, sites.yaml, tokens/")
    p.add_argument("--host", action="append", help="a name or IP the sites dial (repeat; default: localhost, "
                                                   "127.0.0.1, ::1)")
    p.add_argument("--site", action="append", help="issue a token for this site pseudonym (repeat)")
    p.add_argument("--sites-only", action="store_true", help="only issue site tokens (keep the certificates)")
    p.add_argument("--days", type=int, default=365, help="certificate lifetime in days (default 365)")
    p.add_argument("--overwrite", action="store_true", help="replace existing certificate files")
    p.set_defaults(func=cmd_certs)

    p = sub.add_parser("server", help="run a federation (admin): SuperLink, sites, rounds, global model")
    p.add_argument("--config", required=True, help="the federation file (fed.yaml; see docs/federated.md)")
    p.add_argument("--replace", action="store_true", help="replace a model of the same name")
    p.set_defaults(func=cmd_server)

    p = sub.add_parser("client", help="join a federation as a site (runs until Ctrl-C)")
    p.add_argument("--server", required=True, help="HOST:PORT of the federation server")
    p.add_argument("--data", required=True, help="this site's table (CSV/Parquet) or images (.npz/folder)")
    p.add_argument("--site", required=True, help="a name for this site's local work folder and logs")
    p.add_argument("--ca", required=True, help="the federation's ca.crt (from the admin)")
    p.add_argument("--token-file", help="file holding this site's token (from the admin)")
    p.add_argument("--token", help=f"the token itself (visible to other local users; prefer --token-file or "
                                   f"${TOKEN_ENV})")
    p.add_argument("--epsilon", type=float, help="this site's total ε (at most the federation's)")
    p.add_argument("--public-rows", action="store_true",
                   help="allow the model card to list this site's row count")
    p.set_defaults(func=cmd_client)

    p = sub.add_parser("simulate", help="split one table across simulated sites on this machine and "
                                        "compare federated, centralised and single-site quality")
    p.add_argument("data", help="table (CSV/Parquet)")
    p.add_argument("--metadata", required=True, help="the declared schema (kinds, bounds, categories)")
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--split", default="iid", help="iid or by-column=COLUMN (non-IID)")
    p.add_argument("--model", default="ctgan", choices=["ctgan", "tvae"])
    p.add_argument("--strategy", default="fedavg", choices=["fedavg", "fedadam", "fedtrimmedavg",
                                                              "fedmedian"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--epsilon", type=float, help="per-site ε (DP-SGD at every site; off by default)")
    p.add_argument("--param", action="append", help="model setting KEY=VALUE (e.g. embedding_dim=64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="name of the saved federated model (default simulated-MODEL-Nsites)")
    p.add_argument("--replace", action="store_true", help="replace a model of that name")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--verbose", action="store_true", help="show the federation's log")
    p.set_defaults(func=cmd_simulate)
