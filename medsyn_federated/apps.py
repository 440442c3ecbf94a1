"""The Flower apps of a MedSyn federation: one ``ServerApp`` (runs at the server, started by Flower's
SuperLink) and one ``ClientApp`` (runs at every site, started by the site's SuperNode).

They use Flower's Message API (``flwr.serverapp`` / ``flwr.clientapp``) and its built-in strategies for
aggregation (FedAvg, FedAdam, FedTrimmedAvg, FedMedian; DP-FedAvg through
``DifferentialPrivacyServerSideFixedClipping``). MedSyn adds only what is specific to synthesis:

1. **Shared encoding, no pooling** (tabular): the server sends ``query.bounds`` (DP ranges of columns
   whose bounds are not declared) and ``query.statistics`` (DP histograms over the shared bounds); each
   site answers from its own preprocessing budget (:mod:`medsyn_federated.tabular_site`); the server adds
   the noisy counts and builds the one encoding every site then uses.
2. **Rounds**: ``train`` messages carry the global weights (and the encoding); each site trains locally
   (DP-SGD if the site trains with DP) and answers with weights, public n and post-processing metrics,
   plus its ledger. A site that fails or does not answer within ``round_timeout_s`` is left out of that
   round, which completes with the others (the log and the status file say which site and why).
3. **Evaluation** (without DP only): ``evaluate`` asks each site for the quality score of the global
   model's rows against its own table.

The ServerApp writes ``status.json`` (sites, rounds, per-round losses and quality) and ``federation.log``
in the federation's work folder for the Federation page, and saves the global model as a normal MedSyn
model folder (:mod:`medsyn_federated.model_folder`).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.app import Error as FlowerError
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from medsyn_core.files import atomic_write_json

log = logging.getLogger("medsyn.federated")
QUERY_BOUNDS = f"{MessageType.QUERY}.bounds"
QUERY_STATISTICS = f"{MessageType.QUERY}.statistics"
SITE_ERROR_CODE = 1  # a MedSyn site refused or failed a task (the reason is value-free)


class FederationRunError(RuntimeError):
    """The federated run cannot go on; the message names sites and counts, never a data value."""

    value_free_message = True


# -- records <-> Python ---------------------------------------------------------------------------------
def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def _json_config(**values: Any) -> ConfigRecord:
    return ConfigRecord({k: json.dumps(v, default=str) for k, v in values.items()})


def _read_json_config(record: ConfigRecord) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in record.items() if isinstance(v, str)}


# =====================================================================================================
# The site: ClientApp
# =====================================================================================================
client_app = ClientApp()


def _node_settings(context: Context) -> dict[str, Any]:
    """What the site's operator set when starting the SuperNode (``medsyn federated client``)."""
    cfg = dict(context.node_config)
    eps = str(cfg.get("epsilon", "") or "")
    return {"data": str(cfg["data-path"]), "site": str(cfg.get("site", "site")),
            "work_dir": Path(str(cfg["work-dir"])), "epsilon": float(eps) if eps else None,
            "public_rows": str(cfg.get("public-rows", "false")).lower() == "true"}


def _site_error(msg: Message, exc: BaseException) -> Message:
    from medsyn_core.redaction import public_error

    return Message(FlowerError(code=SITE_ERROR_CODE, reason=public_error(exc)), reply_to=msg)


def _site_budget(settings: dict[str, Any], node: dict[str, Any], n: int):
    """(budget, trains with DP) of this site: its operator's ε (at most the federation's), else the
    federation's; without DP training, the budget covers the shared-encoding statistics only."""
    from medsyn_core.privacy import PrivacyError
    from medsyn_federated.tabular_site import site_budget

    privacy = settings.get("privacy") or {}
    asked = privacy.get("epsilon")
    eps = node["epsilon"] if node["epsilon"] is not None else asked
    if asked is None and node["epsilon"] is not None:
        raise PrivacyError("This site asks for differential privacy (--epsilon) but the federation trains "
                           "without it; ask the admin to set privacy.epsilon, or join without --epsilon.")
    if asked is not None and eps > float(asked):
        eps = float(asked)  # never spend more than the federation plans; less is the site's right
    budget = site_budget(n, eps, privacy.get("delta"), float(settings.get("preprocessing_epsilon", 1.0)))
    return budget, eps is not None


def _tabular_site(settings: dict[str, Any], node: dict[str, Any]):
    from medsyn_federated.tabular_site import load_site_table

    return load_site_table(node["data"], settings["metadata"], settings["model"])


def _save_site_ledger(node: dict[str, Any], run_id: int, ledger) -> None:
    from medsyn_federated.tabular_site import ledger_path

    ledger.save(ledger_path(node["work_dir"], run_id))


@client_app.query("bounds")
def site_bounds(msg: Message, context: Context) -> Message:
    """DP ranges of the numeric columns without declared bounds."""
    from medsyn_federated import tabular_site

    try:
        settings = _read_json_config(msg.content["config"])["settings"]
        node = _node_settings(context)
        site = _tabular_site(settings, node)
        budget, _ = _site_budget(settings, node, site.n)
        ledger = tabular_site.load_ledger(node["work_dir"], context.run_id, site.n, budget)
        bounds = tabular_site.release_bounds(site, budget, ledger)
        _save_site_ledger(node, context.run_id, ledger)  # before the answer leaves the site
        return Message(RecordDict({"result": _json_config(bounds=bounds)}), reply_to=msg)
    except Exception as exc:  # noqa: BLE001 — the server gets a value-free reason, the site keeps running
        log.error("site task failed: %s", traceback.format_exc(limit=3))
        return _site_error(msg, exc)


@client_app.query("statistics")
def site_statistics(msg: Message, context: Context) -> Message:
    """DP histograms over the shared bounds, the declared schema after PHI, and the public n."""
    from medsyn_federated import tabular_site

    try:
        config = _read_json_config(msg.content["config"])
        settings, bounds = config["settings"], config.get("bounds") or {}
        node = _node_settings(context)
        site = _tabular_site(settings, node)
        budget, _ = _site_budget(settings, node, site.n)
        ledger = tabular_site.load_ledger(node["work_dir"], context.run_id, site.n, budget)
        if any(e.mechanism != "approx-bounds" for e in ledger.entries):
            raise RuntimeError("This site already released its statistics in this run; a second release "
                               "would spend its budget twice.")
        releases = tabular_site.release_statistics(site, budget, ledger, bounds)
        _save_site_ledger(node, context.run_id, ledger)
        return Message(RecordDict({"result": _json_config(
            releases=releases, n=site.n, schema=site.schema.to_dict(), metadata=site.metadata,
            dropped=site.dropped, phi=site.phi_record, unit=site.unit.to_dict(),
            ledger=ledger.to_dict(), rows_public=node["public_rows"])}), reply_to=msg)
    except Exception as exc:  # noqa: BLE001
        log.error("site task failed: %s", traceback.format_exc(limit=3))
        return _site_error(msg, exc)


@client_app.train()
def site_train(msg: Message, context: Context) -> Message:
    """One round of local training from the global weights."""
    try:
        config = _read_json_config(msg.content["config"])
        settings = config["settings"]
        node = _node_settings(context)
        arrays = from_record(msg.content["arrays"])
        server_round = int(config["round"])
        if settings["engine"] == "tabular":
            new, metrics, ledger = _train_tabular(settings, node, config, arrays, server_round,
                                                  context.run_id)
            info = {}
        else:
            new, metrics, ledger, info = _train_imaging(settings, node, arrays, server_round, context.run_id)
        info["rows"] = int(metrics["num-examples"]) if node["public_rows"] else None
        content = RecordDict({"arrays": to_record(new), "metrics": MetricRecord(metrics),
                              "site": _json_config(ledger=ledger.to_dict() if ledger is not None else None,
                                                   **info)})
        return Message(content, reply_to=msg)
    except Exception as exc:  # noqa: BLE001
        log.error("site task failed: %s", traceback.format_exc(limit=3))
        return _site_error(msg, exc)


def _train_tabular(settings, node, config, arrays, server_round, run_id):
    from medsyn_federated import tabular_site
    from medsyn_tabular.transformers.table import TableTransformer

    site = _tabular_site(settings, node)
    budget, private = _site_budget(settings, node, site.n)
    ledger = tabular_site.load_ledger(node["work_dir"], run_id, site.n, budget)
    transformer = TableTransformer.from_dict(config["transformer"])
    plan = None
    if private:
        plan = tabular_site.training_plan(site.n, budget, int(settings["batch_size"]),
                                          int(settings["local_epochs"]), int(settings["rounds"]),
                                          float((settings.get("privacy") or {}).get("max_grad_norm", 1.0)))

    def spend(steps: int) -> None:
        target = "critic" if settings["model"] == "ctgan" else "encoder+decoder"
        tabular_site.spend_training(ledger, plan, steps, target)
        _save_site_ledger(node, run_id, ledger)  # written before any row is read for this round

    new, metrics = tabular_site.train_round(
        site, transformer, settings["model"], arrays, int(settings["batch_size"]),
        int(settings["local_epochs"]), settings.get("hyperparameters") or {},
        int(settings.get("seed", 0)) + server_round, plan=plan, before_training=spend)
    metrics = {k: v for k, v in metrics.items() if k in ("num-examples", "uniform-weight", "loss_g")}
    return new, metrics, ledger


def _train_imaging(settings, node, arrays, server_round, run_id):
    from medsyn_core.privacy import PrivacyBudget, PrivacyLedger
    from medsyn_federated import imaging_site, tabular_site

    imaging = settings.get("imaging") or {}
    data = imaging_site.load_site_images(node["data"], int(imaging.get("resolution", 32)),
                                         list(imaging["class_names"]))
    privacy = settings.get("privacy") or {}
    eps = None
    if privacy.get("epsilon") is not None:
        eps = min(float(privacy["epsilon"]), node["epsilon"] or float(privacy["epsilon"]))
    elif node["epsilon"] is not None:
        from medsyn_core.privacy import PrivacyError

        raise PrivacyError("This site asks for differential privacy (--epsilon) but the federation trains "
                           "without it; ask the admin to set privacy.epsilon, or join without --epsilon.")
    ledger = None
    path = tabular_site.ledger_path(node["work_dir"], run_id)

    def spend(plan, steps: int) -> None:
        nonlocal ledger
        import dataclasses

        from medsyn_imaging.training.training_data import deduplicate

        n = len(deduplicate(data).images)
        budget = dataclasses.replace(PrivacyBudget.create(n, eps, privacy.get("delta")),
                                     preprocessing_share=0.0)  # images: nothing but DP-SGD reads them
        ledger = PrivacyLedger.load(path) if path.exists() else PrivacyLedger(n, budget.to_dict())
        tabular_site.spend_training(ledger, plan, steps, "discriminator")
        ledger.save(path)

    new, metrics, _ = imaging_site.train_round(data, settings, arrays, server_round, epsilon=eps,
                                               delta=privacy.get("delta"), before_training=spend)
    metrics = {k: v for k, v in metrics.items() if k in ("num-examples", "uniform-weight", "g_loss")}
    # how the images were fitted follows from their size alone (public), never from their content
    info = {"native_size": data.native_size, "fit": data.fit, "pad": data.pad, "channels": data.channels}
    return new, metrics, ledger, info


@client_app.evaluate()
def site_evaluate(msg: Message, context: Context) -> Message:
    """Quality of the global model's rows against this site's table (asked only without DP)."""
    from medsyn_federated import tabular_site
    from medsyn_tabular.transformers.table import TableTransformer

    try:
        config = _read_json_config(msg.content["config"])
        settings = config["settings"]
        if settings.get("privacy"):
            raise RuntimeError("Evaluation on a site's rows is not DP; it is never run under DP.")
        node = _node_settings(context)
        site = _tabular_site(settings, node)
        quality = tabular_site.quality_of(site, TableTransformer.from_dict(config["transformer"]),
                                          settings["model"], from_record(msg.content["arrays"]),
                                          int(settings["batch_size"]), settings.get("hyperparameters") or {},
                                          int(settings.get("seed", 0)))
        return Message(RecordDict({"metrics": MetricRecord({"quality": quality,
                                                            "num-examples": float(site.n),
                                                            "uniform-weight": 1.0})}), reply_to=msg)
    except Exception as exc:  # noqa: BLE001
        log.error("site task failed: %s", traceback.format_exc(limit=3))
        return _site_error(msg, exc)


# =====================================================================================================
# The server: ServerApp
# =====================================================================================================
server_app = ServerApp()


class FederationLog:
    """``federation.log`` and ``status.json`` in the server's work folder (what the page shows)."""

    def __init__(self, work_dir: Path, settings: dict[str, Any], names: dict[int, str]):
        self.work_dir, self.names = work_dir, names
        self.status: dict[str, Any] = {
            "state": "waiting for sites", "name": settings["name"], "engine": settings["engine"],
            "model": settings["model"], "rounds": int(settings["rounds"]), "round": 0, "sites_joined": [],
            "history": [], "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "model_path": None,
            "error": None}
        self.write()

    def site(self, node_id: int) -> str:
        return self.names.get(int(node_id), f"unregistered node {node_id}")

    def say(self, text: str, *args: Any, level: int = logging.INFO) -> None:
        line = text % args if args else text
        from flwr.common.logger import log as flwr_log

        flwr_log(level, "MedSyn: %s", line)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.work_dir / "federation.log", "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {logging.getLevelName(level)} {line}\n")

    def update(self, **values: Any) -> None:
        self.status.update(values)
        self.write()

    def write(self) -> None:
        atomic_write_json(self.work_dir / "status.json", self.status)


def _origins(messages: list[Message], replies: list[Message]) -> dict[int, int]:
    """node id of each reply (by position): the node the original message went to. Flower's SuperLink
    answers for a node that went offline (its heartbeat stopped), so the sender is not always the site."""
    sent = {m.metadata.message_id: int(m.metadata.dst_node_id) for m in messages}
    return {i: sent.get(r.metadata.reply_to_message_id, int(r.metadata.src_node_id))
            for i, r in enumerate(replies)}


def _wait_for_sites(grid: Grid, flog: FederationLog, min_sites: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while True:
        nodes = sorted(int(n) for n in grid.get_node_ids())
        if nodes != seen:
            seen = nodes
            flog.update(sites_joined=[flog.site(n) for n in nodes])
            flog.say("%d of %d site(s) needed have joined: %s", len(nodes), min_sites,
                     ", ".join(flog.site(n) for n in nodes) or "none")
        if len(nodes) >= min_sites:
            return nodes
        if time.monotonic() > deadline:
            raise FederationRunError(f"Only {len(nodes)} of the {min_sites} site(s) needed joined within "
                               f"{timeout:g} s; start the missing sites' clients and run the server again.")
        time.sleep(1.0)


def _ask(grid: Grid, flog: FederationLog, nodes: list[int], message_type: str, config: ConfigRecord,
         timeout: float, what: str, arrays: ArrayRecord | None = None) -> dict[int, Message]:
    """Send one message per node and return the good replies by node (failures are logged)."""
    messages = []
    for node in nodes:
        content = RecordDict({"config": config} if arrays is None else {"arrays": arrays, "config": config})
        messages.append(Message(content=content, message_type=message_type, dst_node_id=node))
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    origin = _origins(messages, replies)
    good = {}
    for i, reply in enumerate(replies):
        node = origin[i]
        if reply.has_error():
            flog.say("site %s could not %s: %s", flog.site(node), what, reply.error.reason,
                     level=logging.WARNING)
        else:
            good[node] = reply
    answered = set(origin.values())
    for node in nodes:
        if node not in answered:
            flog.say("site %s did not answer (%s) within %g s: it is left out", flog.site(node), what,
                     timeout, level=logging.WARNING)
    return good


def _strategy(settings: dict[str, Any], n_sites: int):
    """One of Flower's built-in strategies (optionally wrapped in Flower's DP-FedAvg)."""
    from flwr.serverapp import strategy as fl

    common = {"min_train_nodes": 1, "min_evaluate_nodes": 1, "min_available_nodes": 1}
    dp = settings.get("dp_fedavg")
    weight = "uniform-weight" if dp else "num-examples"
    name = settings["strategy"]
    if name == "fedadam":
        base = fl.FedAdam(eta=float(settings.get("server_lr", 0.01)), weighted_by_key=weight, **common)
    elif name == "fedtrimmedavg":
        base = fl.FedTrimmedAvg(beta=float(settings.get("trim_fraction", 0.2)), weighted_by_key=weight,
                                **common)
    elif name == "fedmedian":
        base = fl.FedMedian(weighted_by_key=weight, **common)
    else:
        base = fl.FedAvg(weighted_by_key=weight, **common)
    if dp:
        return base, fl.DifferentialPrivacyServerSideFixedClipping(
            base, noise_multiplier=float(dp["noise_multiplier"]), clipping_norm=float(dp["clipping_norm"]),
            num_sampled_clients=n_sites)
    return base, None


def _reseed_numpy_from_os() -> None:
    """Flower's DP-FedAvg draws its Gaussian noise from NumPy's global generator: seed it with 19,968
    bits from the OS before every release (never from the training seed)."""
    np.random.seed([secrets.randbits(32) for _ in range(624)])


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    """The whole federated run: wait for sites, shared encoding (tabular), rounds, save the model."""
    work_dir = Path(str(context.run_config["work-dir"]))
    settings = json.loads((work_dir / "settings.json").read_text(encoding="utf-8"))
    names = {int(k): v for k, v in json.loads((work_dir / "nodes.json").read_text(encoding="utf-8")).items()}
    flog = FederationLog(work_dir, settings, names)
    try:
        _run(grid, settings, flog, work_dir)
    except Exception as exc:  # noqa: BLE001 — recorded for the page, then re-raised for Flower's log
        from medsyn_core.redaction import public_error

        flog.update(state="failed", error=public_error(exc))
        flog.say("the federation stopped: %s", public_error(exc), level=logging.ERROR)
        raise


def _run(grid: Grid, settings: dict[str, Any], flog: FederationLog, work_dir: Path) -> None:
    nodes = _wait_for_sites(grid, flog, int(settings["min_sites"]), float(settings["join_timeout_s"]))
    timeout = float(settings["round_timeout_s"])
    tabular = settings["engine"] == "tabular"
    extra: dict[str, Any] = {}
    if tabular:
        flog.update(state="building the shared encoding")
        transformer, extra = _shared_encoding(grid, flog, settings, nodes, timeout)
        initial = _initial_tabular(settings, transformer)
        transformer_json = transformer.to_dict()
    else:
        from medsyn_federated import imaging_site

        initial, arch = imaging_site.initial_state(settings, len(settings["imaging"]["class_names"]))
        extra["arch"] = arch
        transformer_json = None
    arrays = to_record(initial)
    base, dp = _strategy(settings, len(nodes))
    strategy = dp or base
    ledgers: dict[str, dict] = dict(extra.get("ledgers", {}))
    participation: dict[str, int] = {}
    released = 0
    history = flog.status["history"]
    rounds = int(settings["rounds"])
    for rnd in range(1, rounds + 1):
        flog.update(state="training", round=rnd)
        current = sorted(int(n) for n in grid.get_node_ids())
        config = _json_config(settings=settings, round=rnd, transformer=transformer_json)
        messages = list(strategy.configure_train(rnd, arrays, config, grid))
        asked = [int(m.metadata.dst_node_id) for m in messages]
        flog.say("round %d/%d: training at %d site(s): %s", rnd, rounds, len(asked),
                 ", ".join(flog.site(n) for n in asked))
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        origin = _origins(messages, replies)
        good = [r for r in replies if not r.has_error()]
        good_sites = [flog.site(origin[i]) for i, r in enumerate(replies) if not r.has_error()]
        failed = [origin[i] for i, r in enumerate(replies) if r.has_error()]
        for i, r in enumerate(replies):
            if r.has_error():
                flog.say("round %d: site %s failed and is left out of this round (%s); the round completes "
                         "with the other sites", rnd, flog.site(origin[i]), r.error.reason,
                         level=logging.WARNING)
        missing = [flog.site(n) for n in asked if n not in set(origin.values())]
        for name in missing:
            flog.say("round %d: site %s did not answer within %g s (disconnected or stopped); the round "
                     "completes with the other sites", rnd, name, timeout, level=logging.WARNING)
        missing += [flog.site(n) for n in failed]
        for r, site in zip(good, good_sites, strict=True):
            participation[site] = participation.get(site, 0) + 1
            info = _read_json_config(r.content["site"]) if "site" in r.content else {}
            if info.get("ledger"):
                ledgers[site] = info["ledger"]
            if info.get("rows") is not None:
                extra.setdefault("public_rows", {})[site] = int(info["rows"])
            if "native_size" in info:
                extra["images"] = {k: info[k] for k in ("native_size", "fit", "pad", "channels")}
        if not good:
            flog.say("round %d: no site answered; the global model is unchanged", rnd, level=logging.WARNING)
            history.append({"round": rnd, "sites": [], "missing": missing, "metrics": {}})
            flog.update(history=history)
            continue
        if dp is not None:
            dp.num_sampled_clients = len(good)  # noise std z·C/m for the m updates averaged
            _reseed_numpy_from_os()
        new_arrays, metrics = strategy.aggregate_train(rnd, good)
        if new_arrays is not None:
            arrays = new_arrays
            released += 1
        row = {"round": rnd, "sites": good_sites, "missing": missing,
               "metrics": {k: float(v) for k, v in (metrics or {}).items()
                           if k not in ("num-examples", "uniform-weight")}}
        if tabular and not settings.get("privacy") and settings.get("evaluate", True):
            row["quality"] = _evaluate(grid, flog, settings, arrays, transformer_json, current, timeout)
        history.append(row)
        flog.update(history=history)
        flog.say("round %d/%d done with %d site(s)%s", rnd, rounds, len(good),
                 f"; mean quality {row['quality']:.3f}" if row.get("quality") is not None else "")
    flog.update(state="saving the model")
    from medsyn_federated import model_folder

    result = {**extra, "arrays": from_record(arrays), "transformer": transformer_json,
              "participation": participation, "ledgers": ledgers, "released_rounds": released,
              "history": history, "sites": [flog.site(n) for n in nodes]}
    path = model_folder.save_global_model(settings, result, work_dir)
    flog.update(state="finished", model_path=str(path))
    flog.say("the global model is saved as %s", path.name)


def _evaluate(grid, flog, settings, arrays, transformer_json, nodes, timeout) -> float | None:
    config = _json_config(settings=settings, transformer=transformer_json)
    good = _ask(grid, flog, nodes, MessageType.EVALUATE, config, timeout, "evaluate", arrays=arrays)
    scores = [(float(r.content["metrics"]["quality"]), float(r.content["metrics"]["num-examples"]))
              for r in good.values()]
    if not scores:
        return None
    return float(sum(q * n for q, n in scores) / sum(n for _, n in scores))


def _shared_encoding(grid, flog, settings, nodes, timeout):
    """The shared encoding from the sites' DP releases (two queries when some bounds are undeclared)."""
    from medsyn_federated import tabular_site
    from medsyn_tabular.data.schema import TableSchema

    metadata = settings["metadata"]
    bounds: dict[str, list[float]] = {}
    if any(isinstance(v, dict) and v.get("kind") in ("continuous", "integer", "datetime")
           and (v.get("min") is None or v.get("max") is None) for v in metadata["columns"].values()):
        flog.say("asking %d site(s) for DP ranges of the columns without declared bounds", len(nodes))
        replies = _ask(grid, flog, nodes, QUERY_BOUNDS, _json_config(settings=settings), timeout,
                       "release DP ranges")
        for reply in replies.values():
            for col, (lo, hi) in _read_json_config(reply.content["result"])["bounds"].items():
                old = bounds.get(col)
                bounds[col] = [min(lo, old[0]), max(hi, old[1])] if old else [lo, hi]
    flog.say("asking %d site(s) for DP statistics over the shared bounds", len(nodes))
    replies = _ask(grid, flog, nodes, QUERY_STATISTICS, _json_config(settings=settings, bounds=bounds),
                   timeout, "release DP statistics")
    if len(replies) < int(settings["min_sites"]):
        raise FederationRunError(f"Only {len(replies)} site(s) released statistics; "
                                 f"{settings['min_sites']} are needed for the shared encoding.")
    results = {node: _read_json_config(r.content["result"]) for node, r in replies.items()}
    first = next(iter(results.values()))
    if any(r["schema"] != first["schema"] for r in results.values()):
        raise FederationRunError("The sites prepared different schemas from the metadata (different columns "
                           "in their tables?); every site's table needs the columns the metadata declares.")
    schema = TableSchema.from_dict(first["schema"])
    n_total = int(sum(r["n"] for r in results.values()))
    eps_values = []
    for r in results.values():
        budget = r["ledger"]["budget"] or {}
        share = float(budget.get("preprocessing_share", 1.0))
        from medsyn_tabular.transformers.private import plan_epsilon

        eps_call, _, _ = plan_epsilon(schema, first["metadata"], float(budget["epsilon"]) * share,
                                      float(budget["delta"]) * share)
        eps_values.append(eps_call)
    transformer = tabular_site.shared_transformer(schema, first["metadata"],
                                                  [r["releases"] for r in results.values()],
                                                  min(eps_values), n_total, int(settings.get("seed", 0)))
    flog.say("shared encoding built from %d site(s)' DP statistics (%d columns)", len(results),
             len(transformer.columns))
    ledgers = {flog.site(node): r["ledger"] for node, r in results.items()}
    public_rows = {flog.site(node): int(r["n"]) for node, r in results.items() if r.get("rows_public")}
    return transformer, {"schema": first["schema"], "metadata": first["metadata"],
                         "dropped": first["dropped"], "phi": first["phi"], "unit": first["unit"],
                         "ledgers": ledgers, "public_rows": public_rows}


def _initial_tabular(settings: dict[str, Any], transformer) -> dict[str, np.ndarray]:
    from medsyn_core.device import seed_everything
    from medsyn_federated import tabular_site

    seed_everything(int(settings.get("seed", 0)))
    model = tabular_site.build_model(settings["model"], transformer, int(settings["batch_size"]), 1,
                                     settings.get("hyperparameters") or {}, int(settings.get("seed", 0)),
                                     bool(settings.get("privacy")))
    return tabular_site.exchanged_state(model)

