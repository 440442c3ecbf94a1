"""One model card for every engine: what a model folder's ``model_card.json`` says, in one schema.

Every model folder MedSyn writes (tabular synthesizer, image generator, image classifier, and the engines to
come) holds ``model_card.json`` with these common keys (``card_format`` 2):

* ``name``, ``engine`` (``tabular`` or ``imaging``), ``kind`` (``ctgan``, ``tvae``, ``stylegan2``, ``dcgan``,
  ``resnet9``, ``ldm3d``, …), ``created``;
* ``data_source``: where the training data came from (a label, never a real identifier);
* ``parameters``: the hyperparameters that define the model; ``metrics``: measured figures (losses allowed
  to leave the fit, evaluation results);
* ``differential_privacy``: the one privacy block (:func:`privacy_block` writes it for every engine):
  ``enabled``, and when enabled ``epsilon_total``, ``delta_total``, ``unit``, the DP-SGD numbers and the
  ledger file; ``dp_label``: its one-line summary (:func:`dp_label`).

Engine-specific keys stay beside these. :func:`read_card` reads every card written so far (tabular format
1, image generators and classifiers before this schema, the bundled demo) into one :class:`CardView`, so
folders written by earlier versions still show their ε, parameters and metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CARD_FORMAT = 2
CARD_FILE = "model_card.json"
LEDGER_FILE = "privacy_ledger.json"
#: The engine each model kind belongs to.
KIND_ENGINE = {"ctgan": "tabular", "tvae": "tabular", "mst": "tabular", "aim": "tabular", "argn": "tabular",
               "ehr-ar": "tabular", "stylegan2": "imaging", "dcgan": "imaging", "resnet9": "imaging",
               "ldm3d": "imaging"}


def engine_of(kind: str) -> str:
    return KIND_ENGINE.get(str(kind), "unknown")


def privacy_block(ledger, unit: str, **extra: Any) -> dict[str, Any]:
    """The card's ``differential_privacy`` block of a DP model, ε/δ recomputed from ``ledger`` (a
    :class:`~medsyn_core.privacy.PrivacyLedger`); ``unit`` says what one neighbour adds or removes."""
    eps, delta = ledger.total()
    sgd = next((e for e in ledger.entries if e.mechanism == "dp-sgd"), None)
    block: dict[str, Any] = {
        "enabled": True, "epsilon_total": eps, "delta_total": delta, "unit": unit,
        "requested": ledger.budget, "dataset_rows": ledger.dataset_rows,
        "breakdown": {k: {"epsilon": v[0], "delta": v[1]} for k, v in ledger.breakdown().items()},
        "mechanisms": len(ledger.entries), "public_statistics": list(ledger.public_statistics),
        "library_versions": ledger.library_versions, "ledger_file": LEDGER_FILE,
        "randomness": "DP noise and sampling from OS entropy: the training is not reproducible from its "
                      "seed (sampling the saved model is)",
    }
    if sgd is not None:
        block.update(noise_multiplier=sgd.noise_multiplier, sample_rate=sgd.sample_rate, steps=sgd.steps,
                     max_grad_norm=sgd.max_grad_norm, accountant=sgd.accountant)
    block.update(extra)
    return block


def off_block(note: str) -> dict[str, Any]:
    """The ``differential_privacy`` block of a model trained without DP."""
    return {"enabled": False, "note": note}


@dataclass(frozen=True)
class PrivacySummary:
    """The privacy facts of a card, whatever its format."""

    enabled: bool
    epsilon: float | None = None
    delta: float | None = None
    unit: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """'DP: ε = 1 (δ = 1e-05)' or 'DP: off'."""
        if not self.enabled or self.epsilon is None:
            return "DP: off"
        return f"DP: ε = {self.epsilon:.3g} (δ = {self.delta:.2g})"


def privacy_summary(card: dict[str, Any], ledger: dict[str, Any] | None = None) -> PrivacySummary:
    """The privacy facts of any card (a ledger file, when given, is the authority for ε and δ)."""
    dp = card.get("differential_privacy")
    if ledger:
        from medsyn_core.privacy import PrivacyLedger

        try:
            eps, delta = PrivacyLedger.from_dict(ledger).total()
        except (KeyError, TypeError, ValueError):  # not a ledger MedSyn wrote: read the card instead
            pass
        else:
            unit = dp.get("unit") if isinstance(dp, dict) else None
            return PrivacySummary(True, eps, delta, unit, dp if isinstance(dp, dict) else {})
    if isinstance(dp, dict) and dp.get("enabled", "epsilon_total" in dp) and "epsilon_total" in dp:
        return PrivacySummary(True, float(dp["epsilon_total"]), float(dp.get("delta_total", 0.0)),
                              dp.get("unit"), dp)
    return PrivacySummary(False, details=dp if isinstance(dp, dict) else {})


def dp_label(card: dict[str, Any]) -> str:
    """One line for a card's privacy: 'DP: ε = 1 (δ = 1e-05)' or 'DP: off' (every engine)."""
    return privacy_summary(card).label


@dataclass(frozen=True)
class CardView:
    """A model card read into the common schema (see the module docstring)."""

    name: str
    engine: str
    kind: str
    data_source: str
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    privacy: PrivacySummary
    raw: dict[str, Any]


def _kind(card: dict[str, Any]) -> str:
    if card.get("kind") in KIND_ENGINE:
        return card["kind"]
    for key in ("model", "engine"):  # tabular format 1 and generators: 'model'; classifiers: 'engine'
        if card.get(key) in KIND_ENGINE:
            return card[key]
    return str(card.get("kind") or card.get("model") or "unknown")


def read_card(card: dict[str, Any], folder: str | Path | None = None,
              ledger: dict[str, Any] | None = None) -> CardView:
    """Any card written by MedSyn, old or new, as a :class:`CardView`."""
    kind = _kind(card)
    data = card.get("data") if isinstance(card.get("data"), dict) else {}
    source = card.get("data_source")
    if isinstance(source, dict):
        source = source.get("source")
    source = str(source or data.get("source") or "unknown")
    parameters = card.get("parameters")
    if not isinstance(parameters, dict):  # generators and classifiers before card format 2
        training = card.get("training") if isinstance(card.get("training"), dict) else {}
        parameters = training.get("config") if isinstance(training.get("config"), dict) else \
            {k: v for k, v in training.items() if k not in ("seconds", "command", "selection")}
    metrics = card.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        metrics = {}
        evaluation = card.get("evaluation")
        if isinstance(evaluation, dict):
            metrics.update({k: v for k, v in evaluation.items() if isinstance(v, int | float)
                            and not isinstance(v, bool)})
        if isinstance(card.get("final_loss"), dict):
            metrics.update({f"final {k}": v for k, v in card["final_loss"].items() if k not in ("epochs",)})
    name = str(card.get("name") or (Path(folder).name if folder else "unknown"))
    return CardView(name, engine_of(kind), kind, source, dict(parameters or {}), metrics,
                    privacy_summary(card, ledger), card)


def read_folder(folder: str | Path) -> CardView | None:
    """The card of a model folder (with its ledger, if any), or None when it has no readable card."""
    folder = Path(folder)
    try:
        card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        ledger = json.loads((folder / LEDGER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        ledger = None
    return read_card(card, folder, ledger)


# -- the latest evaluation: one figure everywhere ------------------------------------------------------
EVALUATIONS_DIR = "model_metrics"


def _evaluation_file(name: str) -> Path:
    from medsyn_core import names, settings

    return names.path_inside(settings.home_dir() / EVALUATIONS_DIR, f"{names.check_name(name)}.json")


def record_evaluation(name: str, metrics: dict[str, Any], report: str | None = None) -> Path:
    """Make ``metrics`` (e.g. FID with its real-vs-real floor, verdicts, ``evaluated_at``) the latest
    evaluation of model ``name``: every reader of its card (:func:`with_latest_evaluation`, the model
    store, the generator list, the sampling pages) then shows these numbers and no older ones. Kept in
    the MedSyn home folder (``model_metrics/<name>.json``, private), so bundled read-only model folders
    get it too. ``report``: the saved report's file name."""
    from medsyn_core import settings
    from medsyn_core.files import atomic_write_json, private_mkdir

    private_mkdir(settings.home_dir() / EVALUATIONS_DIR)
    path = _evaluation_file(name)
    atomic_write_json(path, {"metrics": dict(metrics), "report": report})
    return path


def latest_evaluation(name: str) -> dict[str, Any] | None:
    """The evaluation recorded by :func:`record_evaluation` for model ``name``, or None."""
    try:
        path = _evaluation_file(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):  # also a name that is no safe slug (names.NameRefused)
        return None


def with_latest_evaluation(card: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """``card`` with its ``metrics`` (and an imaging card's ``evaluation`` block) replaced by the latest
    recorded evaluation when there is one; the card itself is not changed."""
    name = name or card.get("name")
    latest = latest_evaluation(str(name)) if name else None
    if not latest:
        return card
    metrics = dict(latest["metrics"])
    out = {**card, "metrics": metrics}
    if "evaluation" in card or card.get("engine") == "imaging":
        out["evaluation"] = {**{k: v for k, v in metrics.items()}, "report": latest.get("report"),
                             "note": "Latest evaluation in this MedSyn home (replaces the card's own)."}
    return out
