"""The global model of a federation, saved as a normal MedSyn model folder and registered in the store.

* Tabular: the folder :meth:`TabularSynthesizer.save` writes (weights, ``transformer.json`` = the shared
  encoding, ``schema.json``, ``config.json``, ``model_card.json``), so ``TabularSynthesizer.load``, the
  Model store page and ``medsyn tabular sample`` use it like any other.
* Imaging: a generator folder in the layout of :mod:`medsyn_imaging.training.generator_store` (the EMA
  generator's weights, ``config.json``, ``model_card.json``), loaded by ``load_generator``.

The card has the common schema (:mod:`medsyn_core.model_card`) plus a ``federation`` block: sites by
pseudonym (never an address, a token or a site's own name), rounds each took part in, rows per site only
where the site declared its row count public, the strategy and the per-round history. Its
``differential_privacy`` block states every guarantee with its unit:

* **sample level** (DP-SGD at each site): one row (or image) of one site; ``per_site`` holds each site's
  ledger, from which its ε recomputes; the card's ``epsilon_total`` is the largest site ε (the sites'
  tables are disjoint, so each site's patients have their own site's guarantee);
* **client level** (DP-FedAvg): one whole site, recomputed from the noise multiplier and the number of
  released aggregates (Gaussian mechanism at sample rate 1, RDP accountant).

Without site DP, the shared encoding's statistics are still DP (each site's preprocessing ledger is in
``per_site``), but the model's weights carry no sample-level guarantee; the card says so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from medsyn_core import model_card
from medsyn_core.privacy import PrivacyLedger
from medsyn_core.privacy.ledger import LedgerEntry, dpsgd_epsilon


def client_level_entry(settings: dict[str, Any], released_rounds: int, n_sites: int) -> LedgerEntry:
    """The DP-FedAvg ledger entry: ``released_rounds`` Gaussian releases with noise multiplier z."""
    dp = settings["dp_fedavg"]
    delta = float(dp.get("delta") or min(1e-5, 1.0 / (10.0 * max(n_sites, 1))))
    z = float(dp["noise_multiplier"])
    eps = dpsgd_epsilon("rdp", z, 1.0, released_rounds, delta) if released_rounds else 0.0
    return LedgerEntry(stage="training", mechanism="dp-fedavg", target="average of the sites' updates",
                       epsilon=eps, delta=delta, noise_multiplier=z, sample_rate=1.0, steps=released_rounds,
                       max_grad_norm=float(dp["clipping_norm"]), accountant="rdp",
                       details={"clipping": "server-side fixed clipping of each site's update (Flower)",
                                "neighbouring": "replace one site's data (the number of sites is public)"})


def privacy_section(settings: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The card's ``differential_privacy`` block for a federation (see the module docstring)."""
    per_site = {}
    for site, data in sorted((result.get("ledgers") or {}).items()):
        ledger = PrivacyLedger.from_dict(data)
        eps, delta = ledger.total()
        per_site[site] = {"epsilon": eps, "delta": delta, "breakdown": {
            k: {"epsilon": v[0], "delta": v[1]} for k, v in ledger.breakdown().items()}, "ledger": data}
    sample_level = bool(settings.get("privacy"))
    unit_image = settings["engine"] == "imaging"
    sample_unit = ("one image of one site (exact duplicates removed at each site)" if unit_image
                   else "one row of one site's table (one patient where the metadata declares a patient key)")
    block: dict[str, Any] = {"per_site": per_site, "sample_level": sample_level}
    if settings.get("dp_fedavg"):
        entry = client_level_entry(settings, int(result.get("released_rounds", 0)),
                                   len(result.get("sites") or []))
        block["client_level"] = {"epsilon": entry.recompute_epsilon(), "delta": entry.delta,
                                 "unit": "one whole site (all of its records)", "entry": entry.__dict__}
    if sample_level and per_site:
        worst = max(per_site.values(), key=lambda v: v["epsilon"])
        block.update(enabled=True, epsilon_total=worst["epsilon"], delta_total=worst["delta"],
                     unit=sample_unit + "; each site's ε is in per_site (the largest is shown)")
    elif "client_level" in block:
        block.update(enabled=True, epsilon_total=block["client_level"]["epsilon"],
                     delta_total=block["client_level"]["delta"], unit=block["client_level"]["unit"])
    else:
        block.update(enabled=False, note=(
            "Trained without differential privacy: the model's weights carry no guarantee. The shared "
            "encoding's statistics were released by each site under DP (see per_site)."))
    block["randomness"] = ("DP noise and sampling from OS entropy at each site; DP-FedAvg noise from "
                           "NumPy's global generator re-seeded from the OS before every release")
    return block


def _card(settings: dict[str, Any], result: dict[str, Any], kind: str, extra: dict[str, Any]
          ) -> dict[str, Any]:
    sites = sorted(result.get("sites") or [])
    last = result["history"][-1]["metrics"] if result.get("history") else {}
    quality = [r["quality"] for r in result.get("history") or [] if r.get("quality") is not None]
    card = {
        "card_format": model_card.CARD_FORMAT, "name": settings["name"],
        "engine": settings["engine"], "kind": kind, "model": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_source": f"federation of {len(sites)} site(s): {', '.join(sites)} (pseudonyms; no record "
                       "left a site)",
        "parameters": {**(settings.get("hyperparameters") or {}), "rounds": settings["rounds"],
                       "local_epochs": settings["local_epochs"], "batch_size": settings["batch_size"],
                       "strategy": settings["strategy"], "seed": settings.get("seed", 0)},
        "metrics": {**{f"final {k}": v for k, v in last.items()},
                    **({"final site quality": quality[-1]} if quality else {})},
        "federation": {
            "engine": "Flower (flwr) deployment engine: SuperLink + SuperNodes, Message API",
            "sites": [{"pseudonym": s, "rounds": int(result["participation"].get(s, 0)),
                       "rows": (result.get("public_rows") or {}).get(s, "not declared public")}
                      for s in sites],
            "rounds": settings["rounds"], "strategy": settings["strategy"],
            "released_rounds": int(result.get("released_rounds", 0)), "history": result.get("history"),
            "shared_encoding": ("declared metadata + each site's DP statistics, summed at the server"
                                if settings["engine"] == "tabular" else "not needed (images)"),
        },
        "differential_privacy": privacy_section(settings, result),
        **extra,
    }
    card["dp_label"] = model_card.dp_label(card)
    return card


def save_global_model(settings: dict[str, Any], result: dict[str, Any], work_dir: Path) -> Path:
    """Write and register the global model; returns its folder (under the home's ``models/``)."""
    if settings["engine"] == "tabular":
        return _save_tabular(settings, result)
    return _save_imaging(settings, result)


def _save_tabular(settings: dict[str, Any], result: dict[str, Any]) -> Path:
    from medsyn_federated import tabular_site
    from medsyn_tabular.data.schema import TableSchema
    from medsyn_tabular.synthesizer import TabularSynthesizer
    from medsyn_tabular.transformers.table import TableTransformer

    hyper = dict(settings.get("hyperparameters") or {})
    if settings.get("privacy") and settings["model"] == "ctgan":
        hyper["pac"] = 1
    epochs = int(settings["rounds"]) * int(settings["local_epochs"])
    synth = TabularSynthesizer(model=settings["model"], epochs=epochs, batch_size=int(settings["batch_size"]),
                               seed=int(settings.get("seed", 0)), schema=result["metadata"], **hyper)
    synth.transformer = TableTransformer.from_dict(result["transformer"])
    synth.schema = TableSchema.from_dict(result["schema"])
    synth.model = tabular_site.build_model(settings["model"], synth.transformer, int(settings["batch_size"]),
                                           epochs, hyper, int(settings.get("seed", 0)), False)
    tabular_site.load_exchanged(synth.model, result["arrays"])
    synth.model.loss_history = [{"epoch": r["round"], "epochs": settings["rounds"], **r["metrics"]}
                                for r in result["history"] if r.get("metrics")] or [{"epoch": 0}]
    synth.dropped, synth.phi_record = dict(result["dropped"]), list(result["phi"])
    extra = {"columns_modelled": [c.name for c in synth.schema.modelled],
             "columns_not_modelled": synth.dropped,
             "phi_handling": synth.phi_record, "privacy_unit": result.get("unit"),
             "statistics_provenance": synth.transformer.provenance,
             "rows": int(sum((result.get("public_rows") or {}).values())) or None}
    synth.card = _card(settings, result, settings["model"], extra)
    return synth.save(name=settings["name"], replace=bool(settings.get("replace")),
                      overwrite=bool(settings.get("replace")), actor=str(settings.get("actor", "federation")))


def _save_imaging(settings: dict[str, Any], result: dict[str, Any]) -> Path:
    import shutil

    import torch
    from safetensors.torch import save_file

    from medsyn_core import model_store, names
    from medsyn_core.files import atomic_directory, atomic_write_json
    from medsyn_imaging.networks.gan_models import build_generator
    from medsyn_imaging.training import generator_store as store

    name, arch = settings["name"], result["arch"]
    replace = bool(settings.get("replace"))
    model_store.ensure_model_name_free(name, replace=replace)
    out_dir = names.model_dir(name)
    existed = out_dir.exists()
    images = result.get("images") or {"native_size": arch["resolution"], "fit": "none", "pad": 0,
                                      "channels": arch.get("img_channels", 1)}
    generator = build_generator(settings["model"], arch)
    state = generator.state_dict()
    for k in state:
        if f"G_ema.{k}" in result["arrays"]:
            value = torch.as_tensor(np.asarray(result["arrays"][f"G_ema.{k}"]))
            state[k] = value.to(state[k].dtype).reshape(state[k].shape)
    generator.load_state_dict(state)
    config = {"format": store.CONFIG_FORMAT, "model": settings["model"], "arch": arch,
              "data": {"class_names": list(settings["imaging"]["class_names"]),
                       "channels": images["channels"],
                       "native_size": images["native_size"], "fit": images["fit"], "pad": images["pad"],
                       "source": "federated sites"}}
    extra = {"task": "image generation", "weights": "exponential moving average (EMA) of the generator, "
             "averaged over the sites each round",
             "data": {"source": "federated sites", "class_names": list(settings["imaging"]["class_names"]),
                      "native_size": images["native_size"]},
             "intended_use": "Previews and method development with synthetic scans; not for diagnosis."}
    card = _card(settings, result, settings["model"], extra)
    with atomic_directory(out_dir, overwrite=replace) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()},
                  str(tmp / store.WEIGHTS_FILE))
        atomic_write_json(tmp / store.CONFIG_FILE, config)
        atomic_write_json(tmp / store.CARD_FILE, card)
    try:
        store.register_generator(out_dir, name=name, replace=replace,
                                 actor=str(settings.get("actor", "federation")))
    except names.NameTaken:
        if not existed:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return out_dir


def read_site_epsilons(folder: str | Path) -> dict[str, float]:
    """Each site's ε recomputed from its ledger in a federated model's card (for checks and the page)."""
    card = json.loads((Path(folder) / model_card.CARD_FILE).read_text(encoding="utf-8"))
    sites = (card.get("differential_privacy") or {}).get("per_site") or {}
    return {site: PrivacyLedger.from_dict(v["ledger"]).total()[0] for site, v in sites.items()}
