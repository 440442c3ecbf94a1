"""What a site does with its own table in a tabular federation (runs inside the site's Flower ClientApp).

Nothing here sends anything: these functions read the site's table, release DP statistics, train the
shared model for one round and keep the site's privacy ledger. :mod:`medsyn_federated.apps` turns their
results into Flower messages. The table never leaves this module; what does:

* :func:`release_bounds` / :func:`release_statistics`: DP statistics (discrete Laplace through OpenDP,
  :mod:`medsyn_core.privacy.mechanisms`) from the site's preprocessing budget, each recorded in the ledger;
* :func:`train_round`: the model's weights after local epochs (DP-SGD on the network that reads rows
  when the site trains with DP), the number of rows (public n: it sets the DP-SGD sample rate) and the
  generator's loss (post-processing under DP; the critic's loss on real rows is never sent under DP).

The site's ledger (``ledger-<run id>.json`` in the site's work folder) is written **before** each use
of the data, so a crash never spends budget that the ledger does not show; ε recomputes from it
(:meth:`~medsyn_core.privacy.PrivacyLedger.total`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medsyn_core.privacy import PrivacyBudget, PrivacyError, PrivacyLedger
from medsyn_core.privacy.ledger import LedgerEntry, dpsgd_epsilon

#: Exchanged weights: floating-point tensors only (BatchNorm's integer step counter stays local).
FLOAT_KINDS = "fc"


@dataclass
class SiteTable:
    """A site's table after the declared schema, PHI actions and privacy unit (never sent anywhere)."""

    table: pd.DataFrame
    schema: Any  # TableSchema
    metadata: dict[str, Any]  # the declared metadata after PHI (what the encoding uses)
    phi_record: list[dict[str, Any]]
    dropped: dict[str, str]
    unit: Any  # PrivacyUnit

    @property
    def n(self) -> int:
        return len(self.table)


def load_site_table(path: str | Path, metadata: dict[str, Any], model: str = "ctgan") -> SiteTable:
    """Read the site's table and prepare it with the federation's declared schema (the DP preparation of
    :meth:`TabularSynthesizer.prepare_declared`: nothing about the schema is read from the rows, the
    privacy unit is resolved, PHI actions applied)."""
    from medsyn_tabular.data.io import read_table
    from medsyn_tabular.synthesizer import TabularSynthesizer

    df = read_table(path)
    synth = TabularSynthesizer(model=model, epochs=1, batch_size=2, schema=metadata, pac=1)
    table, schema = synth.prepare_declared(df)
    return SiteTable(table, schema, synth.declared_metadata, synth.phi_record, synth.dropped,
                     synth.privacy_unit)


# -- the site's budget and ledger ----------------------------------------------------------------------
def site_budget(n: int, epsilon: float | None, delta: float | None, preprocessing_epsilon: float
                ) -> PrivacyBudget:
    """The site's budget. With DP training: ``epsilon`` in total (10 % of it for the shared encoding);
    without: ``preprocessing_epsilon`` for the shared encoding only (the statistics that leave the site
    are always DP; the model's weights then carry no guarantee)."""
    if epsilon is not None:
        return PrivacyBudget.create(n, epsilon, delta)
    budget = PrivacyBudget.create(n, preprocessing_epsilon, delta)
    return PrivacyBudget(budget.epsilon, budget.delta, preprocessing_share=1.0 - 1e-12)


def ledger_path(work_dir: str | Path, run_id: int | str) -> Path:
    return Path(work_dir) / f"ledger-{run_id}.json"


def load_ledger(work_dir: str | Path, run_id: int | str, n: int, budget: PrivacyBudget) -> PrivacyLedger:
    path = ledger_path(work_dir, run_id)
    if path.exists():
        return PrivacyLedger.load(path)
    return PrivacyLedger(dataset_rows=n, budget=budget.to_dict())


def release_bounds(site: SiteTable, budget: PrivacyBudget, ledger: PrivacyLedger
                   ) -> dict[str, list[float]]:
    """ε-DP ranges of the numeric columns whose bounds are not declared (one ledger entry each)."""
    from medsyn_tabular.transformers import private

    eps_call, _, _ = private.plan_epsilon(site.schema, site.metadata, budget.epsilon_preprocessing,
                                          budget.delta_preprocessing)
    out = private.release_bounds(site.table, site.schema, site.metadata, eps_call, ledger)
    return {k: [float(v[0]), float(v[1])] for k, v in out.items()}


def release_statistics(site: SiteTable, budget: PrivacyBudget, ledger: PrivacyLedger,
                       bounds: dict[str, list[float]] | None) -> list[dict[str, Any]]:
    """Every DP statistic the shared encoding needs, over the shared ``bounds`` (JSON-safe dicts)."""
    from medsyn_tabular.transformers import private

    eps_call, delta_call, _ = private.plan_epsilon(site.schema, site.metadata, budget.epsilon_preprocessing,
                                                   budget.delta_preprocessing)
    shared = {k: (float(v[0]), float(v[1])) for k, v in (bounds or {}).items()}
    releases = private.release_statistics(site.table, site.schema, site.metadata, eps_call, delta_call,
                                          ledger, bounds=shared)
    return [r.to_dict() for r in releases]


def shared_transformer(schema, metadata: dict[str, Any], releases_by_site: list[list[dict[str, Any]]],
                       eps_call: float, n_public: int, seed: int = 0):
    """The server's step: the shared encoding from the sites' summed releases (post-processing only)."""
    from medsyn_tabular.transformers import private
    from medsyn_tabular.transformers.table import TableTransformer

    releases = [[private.ColumnRelease.from_dict(r) for r in site] for site in releases_by_site]
    combined = private.combine_releases(releases)
    return private.encode_releases(TableTransformer(seed=seed), schema, metadata, combined, eps_call,
                                   n_public)


# -- one round of local training ----------------------------------------------------------------------
def build_model(model: str, transformer, batch_size: int, epochs: int, hyperparameters: dict[str, Any],
                seed: int, private: bool, device: str = "cpu"):
    """A CTGAN or TVAE model (the tabular engine's public classes) over the shared encoding."""
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in hyperparameters.items()}
    if model == "ctgan":
        from medsyn_tabular.models.ctgan import CTGANModel, CTGANParams

        if private:
            hyper["pac"] = 1
        params = CTGANParams(epochs=epochs, batch_size=batch_size, **hyper)
        return CTGANModel(transformer, params, device, seed)
    from medsyn_tabular.models.tvae import TVAEModel, TVAEParams

    return TVAEModel(transformer, TVAEParams(epochs=epochs, batch_size=batch_size, **hyper), device, seed)


def exchanged_state(model) -> dict[str, np.ndarray]:
    """The floating-point weights and buffers of ``model`` as NumPy arrays (what leaves a site)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_tensors().items()
            if v.dtype.is_floating_point}


def load_exchanged(model, arrays: dict[str, np.ndarray]) -> None:
    """Load received weights into ``model`` (missing names keep the model's own values)."""
    import torch

    state = model.state_tensors()
    for k, v in arrays.items():
        if k not in state:
            raise ValueError(f"The server sent a weight ({k}) this model does not have: the site and the "
                             "server use different model settings.")
        state[k] = torch.as_tensor(np.asarray(v)).to(state[k].dtype).reshape(state[k].shape)
    model.load_state_tensors(state)


def training_plan(n: int, budget: PrivacyBudget, batch_size: int, local_epochs: int, rounds: int,
                  max_grad_norm: float):
    """DP-SGD noise calibrated once for every step the site will take over all rounds."""
    from medsyn_core.privacy.dpsgd import plan_dpsgd, steps_per_epoch

    steps = rounds * local_epochs * steps_per_epoch(n, batch_size)
    try:
        return plan_dpsgd(budget.epsilon_training, budget.delta_training, n, batch_size, steps, max_grad_norm)
    except PrivacyError as exc:
        raise PrivacyError(f"This site's ε = {budget.epsilon:g} cannot cover {rounds} rounds of "
                           f"{local_epochs} local epoch(s) on {n} rows: {exc}") from exc


def spend_training(ledger: PrivacyLedger, plan, steps: int, target: str) -> LedgerEntry:
    """Add ``steps`` DP-SGD steps to the site's one training entry (ε recomputed over all its steps)."""
    entry = next((e for e in ledger.entries if e.mechanism == "dp-sgd"), None)
    if entry is None:
        entry = ledger.add(LedgerEntry(
            stage="training", mechanism="dp-sgd", target=target, epsilon=0.0, delta=plan.delta,
            noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate, steps=0,
            max_grad_norm=plan.max_grad_norm, accountant=plan.accountant,
            details={"planned_steps": plan.steps, "target_epsilon": plan.target_epsilon,
                     "poisson_sampling": True, "clipping": "flat per-sample", "rounds": 0}))
    if entry.steps + steps > plan.steps:
        raise PrivacyError(f"This site's privacy budget is spent: {entry.steps} of {plan.steps} planned "
                           "DP-SGD steps are used, and another round would exceed it.")
    entry.steps += int(steps)
    entry.details["rounds"] = int(entry.details.get("rounds", 0)) + 1
    entry.epsilon = dpsgd_epsilon(entry.accountant, entry.noise_multiplier, entry.sample_rate, entry.steps,
                                  entry.delta)
    return entry


def train_round(site: SiteTable, transformer, model_name: str, arrays: dict[str, np.ndarray],
                batch_size: int, local_epochs: int, hyperparameters: dict[str, Any], seed: int,
                plan=None, before_training=None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``local_epochs`` of training from the global weights ``arrays``; returns (new weights, metrics).

    With a DP ``plan`` the network that reads rows is trained with DP-SGD (the model's ``fit_private``)
    and ``before_training(steps)`` is called first (the caller writes the ledger there); the metrics then
    hold only the generator's loss (CTGAN) or nothing computed on real rows (TVAE)."""
    from medsyn_core.device import seed_everything
    from medsyn_core.privacy.dpsgd import steps_per_epoch

    seed_everything(seed)
    model = build_model(model_name, transformer, batch_size, local_epochs, hyperparameters, seed,
                        plan is not None)
    load_exchanged(model, arrays)
    encoded = transformer.transform(site.table, seed=seed)
    metrics: dict[str, float] = {"num-examples": float(site.n), "uniform-weight": 1.0}
    if plan is None:
        model.fit(encoded)
        last = model.loss_history[-1]
        metrics.update({k: float(v) for k, v in last.items() if k.startswith("loss")})
    else:
        steps = local_epochs * steps_per_epoch(site.n, batch_size)
        if before_training is not None:
            before_training(steps)
        engine = model.fit_private(encoded, plan)
        taken = int(sum(h[2] for h in engine.accountant.history))
        history = engine.accountant.history
        if taken != steps or any(abs(h[0] - plan.noise_multiplier) > 1e-12 for h in history):
            raise RuntimeError("DP-SGD ran another number of steps or noise than the ledger records.")
        if model_name == "ctgan":
            metrics["loss_g"] = float(model.loss_history[-1]["loss_g"])  # post-processing: allowed out
    return exchanged_state(model), metrics


def quality_of(site: SiteTable, transformer, model_name: str, arrays: dict[str, np.ndarray],
               batch_size: int, hyperparameters: dict[str, Any], seed: int) -> float:
    """Quality score (SDMetrics' definition, :func:`evaluate_fidelity`) of the global model's rows against
    the site's table. A statistic of real rows: the server asks for it only without DP."""
    from medsyn_tabular.evaluation.fidelity import evaluate_fidelity

    model = build_model(model_name, transformer, batch_size, 1, hyperparameters, seed, False)
    load_exchanged(model, arrays)
    rows = transformer.inverse_transform(model.generate(site.n, np.random.default_rng(seed)), seed=seed)
    kinds = {c.name: ("numeric" if c.kind in ("continuous", "integer") else
                      "datetime" if c.kind == "datetime" else "categorical") for c in site.schema.modelled}
    real = site.table[list(kinds)]
    result = evaluate_fidelity(_comparable(real, kinds), _comparable(rows[list(kinds)], kinds), kinds)
    return float(result.quality)


def _comparable(df: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    out = {}
    for c, k in kinds.items():
        if k == "numeric":
            out[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        elif k == "datetime":
            out[c] = pd.to_datetime(df[c], errors="coerce")
        else:
            out[c] = df[c].astype(object).map(lambda v: None if pd.isna(v) else _key(v))
    return pd.DataFrame(out)


def _key(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if math.isfinite(f) and f.is_integer() else str(f)


def ledger_json(ledger: PrivacyLedger) -> str:
    return json.dumps(ledger.to_dict(), default=str)
