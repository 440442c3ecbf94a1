"""Planning a federation on one machine: split one table across simulated sites, run the real federation
(Flower SuperLink + one SuperNode per site on 127.0.0.1, TLS with throw-away certificates, tokens), fit
the same model centrally and on each site alone, and compare their quality (and TSTR when a target
column is given) against the whole table.

``medsyn federated simulate DATA --metadata schema.yaml --sites 3 --split by-column=age`` calls
:func:`simulate`; ``bench/federated.py`` calls it on two tables.

Splits (:func:`split_table`): ``iid`` deals shuffled rows round-robin; ``by-column=COL`` sorts the rows by
``COL`` (ties in random order) and cuts them into equal consecutive blocks, so each site holds a different
range or set of categories of that column (non-IID, as hospitals with different populations).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def split_table(df: pd.DataFrame, sites: int, split: str = "iid", seed: int = 0) -> list[pd.DataFrame]:
    """``df`` cut into ``sites`` disjoint tables (see the module docstring)."""
    if not 2 <= int(sites) <= 20:
        raise ValueError(f"--sites must be 2 to 20 (got {sites}).")
    if len(df) < 10 * sites:
        raise ValueError(f"{len(df)} rows are too few for {sites} sites (at least 10 rows per site).")
    rng = np.random.default_rng(seed)
    if split == "iid":
        order = rng.permutation(len(df))
        return [df.iloc[order[i::sites]].reset_index(drop=True) for i in range(sites)]
    if split.startswith("by-column="):
        column = split.split("=", 1)[1]
        if column not in df.columns:
            raise ValueError(f"--split by-column: the table has no column {column!r}.")
        shuffled = df.iloc[rng.permutation(len(df))]
        ordered = shuffled.sort_values(column, kind="stable", na_position="last")
        cuts = np.linspace(0, len(ordered), sites + 1).round().astype(int)
        return [ordered.iloc[a:b].reset_index(drop=True) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    raise ValueError(f"--split must be 'iid' or 'by-column=COLUMN' (got {split!r}).")


@dataclass
class SimulationResult:
    """Quality (and TSTR) of the federated, centralised and single-site models against the whole table."""

    sites: int
    split: str
    rows_per_site: list[int]
    federated: dict[str, float]
    centralised: dict[str, float]
    single_sites: list[dict[str, float]]
    model_path: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{self.sites} sites ({self.split}), rows per site: {self.rows_per_site}"]
        keys = sorted(self.federated)
        lines.append(f"{'model':<14}" + "".join(f"{k:>14}" for k in keys))
        for name, row in [("federated", self.federated), ("centralised", self.centralised)] + [
                (f"site {i + 1} alone", r) for i, r in enumerate(self.single_sites)]:
            lines.append(f"{name:<14}" + "".join(f"{row.get(k, float('nan')):>14.3f}" for k in keys))
        return "\n".join(lines)


def _kinds(metadata: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, spec in metadata["columns"].items():
        kind = spec.get("kind") if isinstance(spec, dict) else spec
        if kind in ("continuous", "integer"):
            out[name] = "numeric"
        elif kind == "datetime":
            out[name] = "datetime"
        elif kind in ("categorical", "boolean"):
            out[name] = "categorical"
    return out


def score(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict[str, Any], target: str | None = None,
          test: pd.DataFrame | None = None, seed: int = 0) -> dict[str, float]:
    """Quality (SDMetrics' definition) against ``real``; with ``target`` and ``test``, the TSTR AUC (or
    R²) of gradient boosting trained on ``synthetic`` and tested on ``test``."""
    from medsyn_federated.tabular_site import _comparable
    from medsyn_tabular.evaluation.fidelity import evaluate_fidelity

    kinds = _kinds(metadata)
    cols = list(kinds)
    fidelity = evaluate_fidelity(_comparable(real[cols], kinds), _comparable(synthetic[cols], kinds), kinds)
    out = {"quality": float(fidelity.quality)}
    if target is not None and test is not None:
        from medsyn_tabular.evaluation.utility import evaluate_utility

        r = evaluate_utility(_comparable(real[cols], kinds), _comparable(test[cols], kinds),
                             _comparable(synthetic[cols], kinds), kinds, target, seed)
        row = next(x for x in r.rows if x["model"] == "gradient boosting")
        metric = "AUC" if "synthetic AUC" in row else "R2"
        out[f"tstr {metric.lower()}"] = float(row[f"synthetic {metric}"])
    return out


def _fit_central(table: pd.DataFrame, metadata: dict, model: str, epochs: int, batch_size: int,
                 hyper: dict, seed: int, epsilon: float | None):
    from medsyn_tabular.synthesizer import TabularSynthesizer

    hyper = dict(hyper)
    if epsilon is not None and model == "ctgan":
        hyper["pac"] = 1
    synth = TabularSynthesizer(model=model, epochs=epochs, batch_size=batch_size, seed=seed, schema=metadata,
                               epsilon=epsilon, metadata=metadata if epsilon is not None else None, **hyper)
    return synth.fit(table)


def simulate(data: str | Path | pd.DataFrame, metadata: dict[str, Any] | str | Path, *, user,
             sites: int = 3, split: str = "iid", model: str = "ctgan", rounds: int = 3, local_epochs: int = 1,
             batch_size: int = 50, hyperparameters: dict[str, Any] | None = None,
             epsilon: float | None = None, seed: int = 0, target: str | None = None,
             test: pd.DataFrame | None = None, name: str | None = None, replace: bool = False,
             strategy: str = "fedavg", on_line=None) -> SimulationResult:
    """Run the simulated federation and the comparisons (see the module docstring)."""
    import yaml

    from medsyn_core.files import atomic_write_text
    from medsyn_core.settings import private_temp_dir
    from medsyn_federated import certs, runner, tokens
    from medsyn_tabular.data.io import read_table
    from medsyn_tabular.data.schema import load_override_file

    df = data if isinstance(data, pd.DataFrame) else read_table(data)
    if not isinstance(metadata, dict):
        metadata = load_override_file(metadata)
    hyper = dict(hyperparameters or {})
    parts = split_table(df, sites, split, seed)
    name = name or f"simulated-{model}-{sites}sites"
    timings: dict[str, float] = {}
    with private_temp_dir("medsyn-fedsim-") as tmp:
        files = certs.make_certificates(tmp / "certs", hosts=["127.0.0.1", "localhost"])
        names = [f"site-{chr(97 + i)}" for i in range(sites)]
        toks = {s: tokens.new_token() for s in names}
        runner.write_sites_file(tmp / "sites.yaml", {s: tokens.public_key_openssh(t).decode() for s, t in
                                                     toks.items()})
        for s, part in zip(names, parts, strict=True):
            part.to_csv(tmp / f"{s}.csv", index=False)
        port = runner.free_port()
        fed = {"name": name, "engine": "tabular", "model": model, "metadata": metadata, "rounds": rounds,
               "local_epochs": local_epochs, "batch_size": batch_size, "strategy": strategy,
               "min_sites": sites, "host": "127.0.0.1", "port": port, "round_timeout_s": 1800,
               "join_timeout_s": 600, "evaluate": False, "seed": seed, "hyperparameters": hyper,
               "tls": {"ca": "certs/ca.crt", "cert": "certs/server.pem", "key": "certs/server.key"},
               "sites": "sites.yaml", **({"privacy": {"epsilon": epsilon}} if epsilon is not None else {})}
        atomic_write_text(tmp / "fed.yaml", yaml.safe_dump(fed, sort_keys=False))
        outcome: dict[str, Any] = {}

        def serve() -> None:
            try:
                outcome["status"] = runner.run_server(tmp / "fed.yaml", user=user, replace=replace,
                                                      on_line=on_line)
            except Exception as exc:  # noqa: BLE001 — re-raised below in the caller's thread
                outcome["error"] = exc

        started = time.time()
        server = threading.Thread(target=serve, daemon=True)
        server.start()
        work = runner.server_work_dir(name)
        while not (work / "nodes.json").exists() and server.is_alive():
            time.sleep(0.5)
        clients = []
        try:
            for s in names:
                clients.append(runner.start_client(f"127.0.0.1:{port}", tmp / f"{s}.csv", s, toks[s],
                                                   files.ca_cert, user=user, epsilon=epsilon)[0])
            server.join()
        finally:
            for proc in clients:
                runner.stop_process(proc)
        if "error" in outcome:
            raise outcome["error"]
        timings["federated_s"] = round(time.time() - started, 1)
    model_path = outcome["status"]["model_path"]
    from medsyn_tabular.synthesizer import TabularSynthesizer

    federated = TabularSynthesizer.load(model_path)
    n = len(df)
    fed_scores = score(df, federated.sample(n, seed=seed), metadata, target, test, seed)
    epochs = rounds * local_epochs
    t0 = time.time()
    central = _fit_central(df, metadata, model, epochs, batch_size, hyper, seed, epsilon)
    timings["centralised_s"] = round(time.time() - t0, 1)
    central_scores = score(df, central.sample(n, seed=seed), metadata, target, test, seed)
    singles = []
    for part in parts:
        alone = _fit_central(part, metadata, model, epochs, batch_size, hyper, seed, epsilon)
        singles.append(score(df, alone.sample(n, seed=seed), metadata, target, test, seed))
    return SimulationResult(sites, split, [len(p) for p in parts], fed_scores, central_scores, singles,
                            str(model_path), timings)


def result_json(result: SimulationResult) -> str:
    return json.dumps(result.to_dict(), indent=2, default=str)
