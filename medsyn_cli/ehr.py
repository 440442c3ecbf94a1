"""``medsyn ehr schema|fit|sample|evaluate|privacy``: related EHR tables (patients, visits, conditions,
medications, observations ...) on the command line. FOLDER may also be a zip of the folder.

    medsyn ehr schema FOLDER [--schema ehr.yaml] [--out ehr.yaml]
    medsyn ehr fit FOLDER --out DIR [--schema ehr.yaml] [--epochs N] [--batch-size B] [--seed S]
                          [--epsilon E | --preset strict|balanced|exploratory|off] [--delta D] [--clip C]
    medsyn ehr sample DIR -n PATIENTS --out FOLDER [--fhir FOLDER] [--seed S] [--raw]
    medsyn ehr evaluate REAL SYNTH --out report.html|json [--schema ehr.yaml] [--holdout FOLDER]
    medsyn ehr privacy DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OPERATOR = "cli"  # the audit log's name for the workstation operator (medsyn_cli.audit.CLI_USER)


def _progress():
    def show(record: dict) -> None:
        done, total = record["epoch"], record["epochs"]
        filled = int(30 * done / total)
        loss = f"  loss={record['loss']:.3f}" if "loss" in record else ""
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] epoch {done}/{total}{loss}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def cmd_schema(args: argparse.Namespace) -> int:
    from medsyn_core.files import atomic_write_text
    from medsyn_tabular.ehr.dataset import read_source
    from medsyn_tabular.ehr.schema import schema_yaml

    data = read_source(args.folder, args.schema)
    s = data.schema
    print(f"{args.folder}: {len(data.tables)} tables, layout {s.layout}")
    print(f"{'table':<22} {'role':<9} {'rows':>7}  key / patient / visit / start / stop / code")
    for name, spec in s.tables.items():
        rows = len(data.tables[name]) if name in data.tables else 0
        role = spec.role if spec.model else "-"
        roles = " / ".join(str(x or "-") for x in (spec.key, spec.patient, spec.visit,
                                                   spec.start or spec.birth, spec.stop or spec.death,
                                                   spec.code))
        print(f"{name:<22} {role:<9} {rows:>7}  {roles}")
        if spec.model and (spec.columns or spec.by_code):
            print(f"{'':<41}columns: {', '.join(list(spec.columns) + spec.by_code)}")
        if spec.model and spec.phi:
            print(f"{'':<41}PHI: {', '.join(f'{c} -> {a}' for c, a in spec.phi.items())}")
    if args.out:
        atomic_write_text(args.out, schema_yaml(s))
        print(f"Wrote the EHR schema to {args.out}: review it (roles, keys, time columns, PHI), then pass it "
              "back with --schema. It holds no value read from the rows.")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from medsyn_cli.tabular import print_ledger
    from medsyn_core import model_store
    from medsyn_tabular.ehr.synthesizer import EHRSynthesizer

    model_store.ensure_model_name_free(Path(args.out).name, replace=args.overwrite,
                                       folder=None if args.overwrite else args.out)
    synth = EHRSynthesizer(args.schema, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                           dim=args.dim, epsilon=args.epsilon, delta=args.delta, preset=args.preset,
                           max_grad_norm=args.clip, declared_by=OPERATOR if args.schema else None)
    synth.fit(Path(args.folder), progress=None if args.quiet else _progress())
    out = synth.save(args.out, overwrite=args.overwrite, actor=OPERATOR)
    print(f"Saved the EHR model to {out}: {synth.card['patients']} patients, "
          f"{synth.card['training_seconds']:.1f} s training")
    if synth.ledger is None:
        print("DP: off (no differential privacy; use --epsilon or --preset to train with it)")
    else:
        print_ledger(synth.ledger)
        print("  unit: one patient with all their rows")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from medsyn_core.storage import Store
    from medsyn_tabular.ehr import fhir
    from medsyn_tabular.ehr.dataset import write_folder
    from medsyn_tabular.ehr.synthesizer import EHRSynthesizer

    synth = EHRSynthesizer.load(args.model_dir)
    data = synth.sample(args.n, seed=args.seed)
    write_folder(data, args.out, raw=args.raw, overwrite=args.overwrite)
    sizes = ", ".join(f"{n} {len(df)}" for n, df in data.tables.items())
    print(f"Wrote {args.n} synthetic patients to {args.out} ({sizes}; "
          f"{'raw' if args.raw else 'spreadsheet-safe'} CSV, the input's layout)")
    if args.fhir:
        n = fhir.write_bundles(data, args.fhir)
        print(f"Wrote {n} FHIR Bundles (validated, FHIR {fhir.FHIR_VERSION}) to {args.fhir}")
    with Store() as store:
        store.append_event(OPERATOR, "ehr-sample", {"model": Path(args.model_dir).name, "patients": args.n,
                                                    "fhir": bool(args.fhir)})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medsyn_tabular.ehr.dataset import read_source
    from medsyn_tabular.ehr.evaluation import evaluate_ehr

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm", ".json"):
        raise ValueError(f"--out must end in .html or .json, got {out.name!r}.")
    real = read_source(args.real, args.schema)
    synthetic = read_source(args.synthetic, real.schema)
    holdout = read_source(args.holdout, real.schema) if args.holdout else None
    report = evaluate_ehr(real, synthetic, holdout, figures=not args.no_figures, seed=args.seed)
    report.save(out)
    for section in report.sections:
        print(f"{section.title}\n  {section.summary}")
    if report.warnings:
        print("Warnings:")
        for w in report.warnings:
            print(f"  - {w}")
    print(f"Report written to {out}")
    return 0


def cmd_privacy(args: argparse.Namespace) -> int:
    from medsyn_cli.tabular import print_ledger
    from medsyn_core.privacy import PrivacyLedger

    folder = Path(args.model_dir)
    if not (folder / "encoder.json").exists():
        raise FileNotFoundError(f"{folder} is not a saved EHR model (no encoder.json).")
    if not (folder / "privacy_ledger.json").exists():
        print("DP: off (this model was trained without differential privacy)")
        return 0
    print_ledger(PrivacyLedger.load(folder / "privacy_ledger.json"), entries=True)
    print("  unit: one patient with all their rows (n counts patients)")
    return 0


def register(subparsers) -> None:
    """Add ``medsyn ehr ...`` to the main ``medsyn`` parser."""
    ehr = subparsers.add_parser("ehr", help="related EHR tables: synthetic patients with visits, conditions, "
                                            "medications, observations over time")
    sub = ehr.add_subparsers(dest="ehr_command", metavar="ACTION", required=True)

    p = sub.add_parser("schema", help="print the inferred roles, keys and time columns of an EHR folder")
    p.add_argument("folder", help="folder (or zip) of CSV/Parquet tables: Synthea csv/, OMOP CDM subset, ...")
    p.add_argument("--schema", help="an EHR schema YAML to check against the folder")
    p.add_argument("--out", help="write the schema as a YAML file to review and pass back with --schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("fit", help="train the EHR generator on a folder and save it")
    p.add_argument("folder", help="folder (or zip) of CSV/Parquet tables")
    p.add_argument("--out", required=True, help="folder to write the model to (its name is the model's)")
    p.add_argument("--schema", help="EHR schema YAML (required with DP: `medsyn ehr schema FOLDER --out`)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16, help="patients per batch")
    p.add_argument("--dim", type=int, default=128, help="width of the network")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder and registered model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    dp = p.add_argument_group("differential privacy (off unless --epsilon or a preset is given; the unit is "
                              "the patient with all their rows)")
    dp.add_argument("--epsilon", type=float, help="total ε (e.g. 1 to 10)")
    dp.add_argument("--delta", type=float, help="δ (default min(1e-5, 1/(10 n)), n = patients)")
    dp.add_argument("--preset", choices=("strict", "balanced", "exploratory", "off"))
    dp.add_argument("--clip", type=float, default=1.0, help="per-patient gradient clipping norm (default 1)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("sample", help="sample synthetic patients from a saved EHR model")
    p.add_argument("model_dir", help="folder written by `medsyn ehr fit`")
    p.add_argument("-n", type=int, required=True, help="number of patients")
    p.add_argument("--out", required=True, help="folder to write the tables to (the input's layout)")
    p.add_argument("--fhir", metavar="FOLDER", help="also write one FHIR R4 Bundle per patient there")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: the training seed)")
    p.add_argument("--raw", action="store_true", help="write text cells unchanged (not spreadsheet-safe)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="integrity, fidelity, parent-child, temporal and TSTR report")
    p.add_argument("real", metavar="REAL", help="the real folder (or zip) the model was trained on")
    p.add_argument("synthetic", metavar="SYNTH", help="the synthetic folder (same layout)")
    p.add_argument("--out", required=True, help="report file: .html or .json")
    p.add_argument("--schema", help="EHR schema YAML (default: inferred from REAL)")
    p.add_argument("--holdout", metavar="FOLDER", help="real patients the model never saw (fair TSTR)")
    p.add_argument("--no-figures", action="store_true", help="numbers only (faster)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("privacy", help="print the privacy ledger of a saved EHR model (ε recomputed)")
    p.add_argument("model_dir", help="folder written by `medsyn ehr fit`")
    p.set_defaults(func=cmd_privacy)
