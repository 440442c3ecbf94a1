"""``medsyn tabular evaluate REAL SYNTH --target COL [--holdout FILE] --out report.html|json``.

``register_evaluate(tabular_subparsers)`` adds the ``evaluate`` command to the ``medsyn tabular`` group
that :mod:`medsyn_cli.tabular` creates.
Heavy imports (pandas, scikit-learn, matplotlib) happen inside the handler so ``medsyn --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _column_types(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError("--column-type expects COLUMN=KIND (numeric, datetime or categorical), "
                             f"got {pair!r}.")
        column, kind = pair.split("=", 1)
        out[column.strip()] = kind.strip()
    return out


def _read(path_or_name: str):
    """A CSV path, or the name of a bundled table (e.g. heart_cleveland)."""
    from medsyn_tabular.data.datasets import LOADERS
    from medsyn_tabular.evaluation import read_table_csv

    if not Path(path_or_name).exists() and path_or_name in LOADERS:
        return LOADERS[path_or_name]()
    return read_table_csv(path_or_name)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a synthetic table against the real one and write the report."""
    from medsyn_tabular.evaluation import evaluate_tabular

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm", ".json"):
        raise ValueError(f"--out must end in .html or .json, got {out.name!r}.")
    real = _read(args.real)
    synthetic = _read(args.synthetic)
    holdout = _read(args.holdout) if args.holdout else None
    qis = [c.strip() for c in args.quasi_identifiers.split(",") if c.strip()] \
        if args.quasi_identifiers is not None else None
    report = evaluate_tabular(real, synthetic, target=args.target, holdout=holdout,
                              column_types=_column_types(args.column_type), quasi_identifiers=qis,
                              sensitive=args.sensitive, figures=not args.no_figures, seed=args.seed)
    report.save(out)
    for section in report.sections:
        print(f"{section.title}\n  {section.summary}")
    if report.warnings:
        print("Warnings:")
        for w in report.warnings:
            print(f"  - {w}")
    print(f"Report written to {out}")
    return 0


def register_evaluate(tabular_subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate`` to the ``medsyn tabular`` sub-command group."""
    p = tabular_subparsers.add_parser(
        "evaluate", help="fidelity, utility, privacy and fairness report of a synthetic table",
        description="Compare a synthetic table with the real one it was generated from and write a JSON "
                    "or self-contained HTML report.")
    p.add_argument("real", metavar="REAL", help="real training table (CSV) or a bundled table name")
    p.add_argument("synthetic", metavar="SYNTH", help="synthetic table (CSV)")
    p.add_argument("--target", required=True, metavar="COL", help="column to predict in the utility test")
    p.add_argument("--holdout", metavar="FILE",
                   help="real rows the generator never saw (CSV); needed for membership inference")
    p.add_argument("--out", required=True, metavar="FILE", help="report file: .html or .json")
    p.add_argument("--quasi-identifiers", metavar="A,B",
                   help="comma-separated columns for k-anonymity (default: age, sex and ZIP-like columns)")
    p.add_argument("--sensitive", metavar="COL",
                   help="sensitive column for l-diversity, attribute inference and fairness (e.g. sex)")
    p.add_argument("--column-type", action="append", default=[], metavar="COL=KIND",
                   help="override a column's kind: numeric, datetime or categorical (repeatable)")
    p.add_argument("--no-figures", action="store_true", help="numbers only (faster)")
    p.add_argument("--seed", type=int, default=0, help="random seed of splits and attacks (default 0)")
    p.set_defaults(func=cmd_evaluate)
    return p
