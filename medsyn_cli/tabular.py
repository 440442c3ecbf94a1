"""``medsyn tabular fit|sample|schema``: the tabular engine on the command line.

    medsyn tabular schema DATA [--schema FILE] [--out schema.yaml]
    medsyn tabular fit DATA --model argn|tvae|ctgan|mst|aim --epochs N --seed S --out DIR
                            [--time-budget SECONDS] [--no-early-stopping]
                            [--schema FILE] [--phi COL=ACTION]
                            [--epsilon E | --preset strict|balanced|exploratory|off] [--delta D]
                            [--metadata FILE] [--clip C]
    medsyn tabular privacy DIR        # the privacy ledger of a saved model, ε recomputed from it
    medsyn tabular sample DIR -n N --out OUT.csv [--condition "sex=F" --condition "age>=65"] [--seed S]
                          [--raw]

``fit`` and ``sample`` also work against a MedSyn server (``--server URL``, token in ``$MEDSYN_TOKEN`` or
``--token-file``): ``fit`` uploads DATA (or names a bundled table), trains there as a background job with the
same options and shows the same progress, and the model stays on the server under the name of ``--out``;
``sample`` then takes that model name instead of a folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _progress_bar():
    """A text progress bar for training (on stderr): one line rewritten per epoch."""

    def show(record: dict) -> None:
        stream = sys.stderr
        done, total = record["epoch"], record["epochs"]
        width = 30
        filled = int(width * done / total)
        losses = "  ".join(f"{k}={record[k]:.3f}" for k in ("loss_g", "loss_d", "loss") if k in record)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] epoch {done}/{total}  {losses}")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def _phi_overrides(items: list[str]) -> dict[str, str]:
    from medsyn_cli.main import UserError

    out = {}
    for item in items or []:
        column, sep, action = item.partition("=")
        if not sep:
            raise UserError(f"--phi expects COLUMN=ACTION (e.g. ZIP=drop), got {item!r}.")
        out[column.strip()] = action.strip()
    return out


def cmd_schema(args: argparse.Namespace) -> int:
    from medsyn_tabular.data.io import read_table
    from medsyn_tabular.data.phi import detect_phi
    from medsyn_tabular.data.schema import apply_overrides, infer_schema, load_override_file

    df = read_table(args.data)
    overrides = load_override_file(args.schema) if args.schema else None
    schema = apply_overrides(infer_schema(df), overrides)
    phi = {f.column: f for f in detect_phi(df, schema)}
    print(f"{args.data}: {len(df)} rows x {df.shape[1]} columns")
    print(f"{'column':<28} {'kind':<12} {'missing':>7} {'distinct':>8}  PHI")
    for col in schema.columns:
        flag = f"{phi[col.name].category} -> {phi[col.name].action}" if col.name in phi else ""
        print(f"{col.name:<28} {col.kind:<12} {col.n_missing:>7} {col.n_unique:>8}  {flag}")
    if args.out:
        from medsyn_core.files import atomic_write_text
        from medsyn_tabular.data.privacy_unit import KEY_LIKE_PHI
        from medsyn_tabular.data.schema import declaration_yaml

        rank = {c: i for i, c in enumerate(KEY_LIKE_PHI)}  # patient identifiers first
        flagged = sorted((f for f in phi.values() if f.category in rank), key=lambda f: rank[f.category])
        key_like = list(dict.fromkeys([f.column for f in flagged]
                                      + [c.name for c in schema.columns if c.kind == "identifier"]))
        atomic_write_text(args.out, declaration_yaml(schema, phi.values(), key_like))
        print(f"Wrote the schema to {args.out}: review it (kinds, PHI actions, privacy unit), then pass it "
              "back with --schema. It holds no statistic of the rows.")
    else:
        print("Override kinds or PHI actions with a JSON/YAML schema file (--schema); `--out FILE` writes "
              "this schema as a file to review. Differential privacy needs one (docs/privacy.md).")
    return 0


def print_ledger(ledger, entries: bool = False, unit: str | None = None) -> None:
    """Print the ε/δ breakdown of a privacy ledger (recomputed from its entries) and the protected unit."""
    eps, delta = ledger.total()
    print(f"DP: ε = {eps:.4g} total, δ = {delta:.3g}; protected unit: {unit or 'one row'} "
          f"(n = {ledger.dataset_rows} units; the declared schema and n are public; docs/privacy.md)")
    for stage, (e, d) in ledger.breakdown().items():
        n_mech = sum(1 for x in ledger.entries if x.stage == stage)
        print(f"  {stage:<14} ε = {e:.4g}  δ = {d:.3g}  ({n_mech} mechanism{'s' * (n_mech != 1)})")
    for x in ledger.entries:
        if x.mechanism == "dp-sgd":
            print(f"  DP-SGD on the {x.target}: σ = {x.noise_multiplier:.4g}, q = {x.sample_rate:.4g}, "
                  f"{x.steps} steps, clipping norm {x.max_grad_norm:g}, accountant {x.accountant}")
    if ledger.public_statistics:
        print(f"  declared public (no budget): {', '.join(ledger.public_statistics)}")
    if entries:
        for x in ledger.entries:
            if x.mechanism != "dp-sgd":
                print(f"  {x.stage}: {x.mechanism} on {x.target}: ε = {x.epsilon:.4g}, δ = {x.delta:.3g}")


def _client(args: argparse.Namespace):
    """A client of the server ``--server`` with the token of ``--token-file`` or ``$MEDSYN_TOKEN``."""
    import os

    from medsyn_cli.main import UserError
    from medsyn_client import TOKEN_ENV, MedSynClient

    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UserError(f"--server needs an API token: set ${TOKEN_ENV} or pass --token-file FILE (an admin "
                        "creates one with `medsyn users token create USER`).")
    return MedSynClient(args.server, token=token)


def _remote(call):
    """Run ``call()``; the server's refusal becomes a one-line CLI error."""
    from medsyn_cli.main import UserError
    from medsyn_client import ApiError

    try:
        return call()
    except ApiError as exc:
        raise UserError(f"the server refused: {exc.detail} (HTTP {exc.status})") from None
    except OSError as exc:
        if type(exc).__module__.startswith("httpx"):
            raise UserError(f"cannot reach the server: {exc}") from None
        raise


def cmd_fit_remote(args: argparse.Namespace) -> int:
    """``medsyn tabular fit ... --server URL``: the same fit, run by the server as a background job."""
    import httpx

    from medsyn_core.names import check_name
    from medsyn_core.privacy import PrivacyLedger
    from medsyn_tabular.data.schema import load_override_file

    name = check_name(Path(args.out).name)
    data = Path(args.data)
    try:
        with _client(args) as client:
            dataset = (str(_remote(lambda: client.upload_table(data))["id"]) if data.exists()
                       else args.data)  # not a local file: a bundled table's name on the server
            options = {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
                       "seed": args.seed, "phi": _phi_overrides(args.phi) or None, "epsilon": args.epsilon,
                       "delta": args.delta, "preset": args.preset, "clip": args.clip,
                       "schema": load_override_file(args.schema) if args.schema else None,
                       "metadata": load_override_file(args.metadata) if args.metadata else None,
                       "replace": args.overwrite}
            job = _remote(lambda: client.train_tabular(dataset, name, **options))
            print(f"Queued job {job['job_id']} on {args.server}", file=sys.stderr)
            bar = None if args.quiet else _progress_bar()

            def show(j: dict) -> None:
                losses = (j.get("payload") or {}).get("losses") or []
                if bar is not None and losses:
                    bar({**losses[-1], "epochs": args.epochs})

            done = _remote(lambda: client.wait(job["job_id"], on_progress=show))
            ledger = _remote(lambda: client.ledger(name))
    except httpx.HTTPError as exc:
        from medsyn_cli.main import UserError

        raise UserError(f"cannot reach the server {args.server}: {exc}") from None
    result = done["result"]
    print(f"Saved {args.model} model on the server as {result['model_name']} (job {done['id']}, "
          f"{result['training_seconds']:.1f} s training)")
    if not ledger["differential_privacy"]:
        print("DP: off (no differential privacy; use --epsilon or --preset to train with it)")
    else:
        print_ledger(PrivacyLedger.from_dict(ledger["ledger"]))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    if getattr(args, "server", None):
        return cmd_fit_remote(args)
    from medsyn_core import model_store
    from medsyn_tabular.synthesizer import TabularSynthesizer

    # the folder's name is the model's name in the store: a bad or taken one fails now, not after training
    model_store.ensure_model_name_free(Path(args.out).name, replace=args.overwrite,
                                 folder=None if args.overwrite else args.out)

    synth = TabularSynthesizer(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                               seed=args.seed, schema=args.schema, phi_actions=_phi_overrides(args.phi),
                               epsilon=args.epsilon, delta=args.delta, preset=args.preset,
                               max_grad_norm=args.clip, metadata=args.metadata,
                               early_stopping=False if args.no_early_stopping else None,
                               time_budget_s=args.time_budget)
    synth.fit(Path(args.data), progress=None if args.quiet else _progress_bar())
    from medsyn_cli.audit import CLI_USER

    out = synth.save(args.out, overwrite=args.overwrite, actor=CLI_USER.username)
    if synth.chosen_by_default and synth.ledger is not None:
        print(f"Chosen for DP from n and ε: batch size {synth.batch_size}, {synth.epochs} epochs")
    for entry in synth.phi_record:
        print(f"PHI: {entry['column']}: {entry['detail']}")
    print(f"Saved {synth.model_name} model to {out} (fit {synth.card['training_seconds']:.1f} s training, "
          f"{synth.card['preprocessing_seconds']:.1f} s preprocessing)")
    if synth.card.get("training_stop"):
        print(f"Training stopped after epoch {synth.card['epochs_trained']}: "
              f"{synth.card['training_stop']['stopped_because']}")
    if synth.ledger is None:
        print("DP: off (no differential privacy; use --epsilon or --preset to train with it)")
    else:
        print_ledger(synth.ledger, unit=synth.privacy_unit.describe() if synth.privacy_unit else None)
    return 0


def cmd_privacy(args: argparse.Namespace) -> int:
    from medsyn_core.privacy import PrivacyLedger

    path = Path(args.model_dir) / "privacy_ledger.json"
    if not (Path(args.model_dir) / "config.json").exists():
        raise FileNotFoundError(f"{args.model_dir} is not a saved tabular model (no config.json).")
    if not path.exists():
        print("DP: off (this model was trained without differential privacy)")
        return 0
    from medsyn_core.model_card import read_folder

    view = read_folder(Path(args.model_dir))
    print_ledger(PrivacyLedger.load(path), entries=True, unit=view.privacy.unit if view else None)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from medsyn_core.csv_export import write_csv
    from medsyn_tabular.synthesizer import TabularSynthesizer

    out = Path(args.out)
    if out.is_dir():  # refused before the (possibly long) sampling
        from medsyn_cli.main import UserError

        raise UserError(f"--out {out} is a folder; give the name of the CSV file to write, e.g. "
                        f"{out / 'synthetic.csv'}.")
    if getattr(args, "server", None):  # MODEL is a model name on the server
        import httpx

        from medsyn_core.files import atomic_write_bytes

        try:
            with _client(args) as client:
                data = _remote(lambda: client.sample_bytes(args.model_dir, args.n, args.condition, args.seed,
                                                           fmt="csv", raw=args.raw))
        except httpx.HTTPError as exc:
            from medsyn_cli.main import UserError

            raise UserError(f"cannot reach the server {args.server}: {exc}") from None
        atomic_write_bytes(out, data)
        safety = "raw values, not escaped for spreadsheets" if args.raw else "spreadsheet-safe"
        print(f"Wrote {args.n} synthetic rows from the server's model {args.model_dir} to {args.out} "
              f"({safety})")
        return 0
    synth = TabularSynthesizer.load(args.model_dir)
    rows = synth.sample(args.n, conditions=args.condition or None, seed=args.seed)
    write_csv(rows, args.out, raw=args.raw)
    safety = "raw values, not escaped for spreadsheets" if args.raw else "spreadsheet-safe"
    print(f"Wrote {len(rows)} synthetic rows x {rows.shape[1]} columns to {args.out} ({safety})")
    return 0


def _server_options(p) -> None:
    remote = p.add_argument_group("a MedSyn server (REST API) instead of this machine")
    remote.add_argument("--server", metavar="URL",
                        help="run on this MedSyn server, e.g. https://medsyn.example")
    remote.add_argument("--token-file", help="file holding the API token (default: $MEDSYN_TOKEN)")


def register(subparsers) -> None:
    """Add ``medsyn tabular ...`` to the main ``medsyn`` parser."""
    tab = subparsers.add_parser("tabular", help="synthetic tables: TVAE/CTGAN/MST/AIM (schema, fit, sample)")
    sub = tab.add_subparsers(dest="tabular_command", metavar="ACTION", required=True)

    p = sub.add_parser("schema", help="print the inferred schema and PHI flags of a table")
    p.add_argument("data", help="CSV/TSV or Parquet file")
    p.add_argument("--schema", help="JSON/YAML schema override file")
    p.add_argument("--out", help="write the schema as a YAML file to review and pass back with --schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("fit", help="train a synthesizer on a table and save it")
    p.add_argument("data", help="CSV/TSV or Parquet file")
    from medsyn_tabular.models.registry import MODELS

    p.add_argument("--model", choices=tuple(MODELS), default=None,
                   help="default: mst with DP at ε ≤ 3, argn otherwise. "
                        + "; ".join(spec.summary.replace("%", "%%") for spec in MODELS.values()))
    p.add_argument("--epochs", type=int, default=None,
                   help="the most epochs (default 300; without DP training stops earlier when a held-out "
                        "validation score stops improving); with DP chosen from the rows and ε "
                        "(medsyn_tabular.defaults)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="without DP: stop training before this many seconds are spent")
    p.add_argument("--no-early-stopping", action="store_true",
                   help="without DP: train all --epochs (no held-out validation rows)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default 500; with DP chosen from the rows and ε (medsyn_tabular.defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder to write the model to")
    p.add_argument("--schema", help="JSON/YAML schema/metadata file (required with DP: write one with "
                                    "`medsyn tabular schema DATA --out schema.yaml` and review it)")
    p.add_argument("--phi", action="append", metavar="COL=ACTION",
                   help="PHI action for a column: drop, keep, year, shift, zip3, age90 (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output folder and the model registered under its name (audited)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _server_options(p)
    dp = p.add_argument_group("differential privacy (off unless --epsilon or a preset is given)")
    dp.add_argument("--epsilon", type=float, help="total ε, preprocessing included (e.g. 1 to 10)")
    dp.add_argument("--delta", type=float, help="δ (default min(1e-5, 1/(10 n)); must be below 1/n)")
    dp.add_argument("--preset", choices=("strict", "balanced", "exploratory", "off"),
                    help="strict ε=1, balanced ε=3, exploratory ε=10, off")
    dp.add_argument("--metadata", help="JSON/YAML file of public bounds/categories (schema-file layout)")
    dp.add_argument("--clip", type=float, default=1.0, help="per-sample gradient clipping norm (default 1)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("privacy", help="print the privacy ledger of a saved model (ε recomputed)")
    p.add_argument("model_dir", help="folder written by `medsyn tabular fit`")
    p.set_defaults(func=cmd_privacy)

    p = sub.add_parser("sample", help="sample synthetic rows from a saved model")
    p.add_argument("model_dir", help="folder written by `medsyn tabular fit`")
    p.add_argument("-n", type=int, required=True, help="number of rows")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--condition", action="append", metavar="EXPR",
                   help="e.g. sex=F or 'age>=65' (repeatable; all must hold)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: the training seed)")
    p.add_argument("--raw", action="store_true",
                   help="write text cells unchanged; by default cells starting with = + - @ (formulas in "
                        "spreadsheets) get a leading apostrophe")
    _server_options(p)
    p.set_defaults(func=cmd_sample)

    from medsyn_cli.tabular_evaluate import register_evaluate

    register_evaluate(sub)
