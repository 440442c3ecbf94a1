"""The tabular model registry: a model's name -> how it is built and what the synthesizer must know.

Every model has one small interface over the transformer's encoded matrix (n, output_dim):
``fit(encoded, progress, checkpoint, resume)``, ``fit_private(encoded, plan, progress)``,
``generate(n, rng, condition) -> encoded``, ``state_tensors()`` / ``load_state_tensors(tensors)``,
``params_dict()`` and ``loss_history``. :class:`ModelSpec` says which DP path it takes:

* ``"dp-sgd"``: a network trained by DP-SGD (Opacus); the plan is a
  :class:`~medsyn_core.privacy.dpsgd.DPSGDPlan`, the transformer's statistics come from the preprocessing
  share (:func:`~medsyn_tabular.transformers.private.fit_private`).
* ``"marginals"``: a marginal-based mechanism (AIM) in zCDP; the transformer holds only the public (or DP)
  domain (:func:`~medsyn_tabular.transformers.private.fit_domain_private`) and the model measures what it
  needs itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str  # one line for the page and the CLI help
    module: str  # where the model and its parameters live (imported on first use: torch/JAX are heavy)
    model_class: str
    params_class: str
    dp: str  # "dp-sgd" or "marginals"
    real_row_losses: tuple[str, ...] = ()  # per-epoch losses computed on real rows (hidden under DP)
    dp_target: str = ""  # what DP-SGD trains (ledger target)
    steers_conditions: bool = False  # takes an exact (column, slot) condition at generation
    uses_batches: bool = True  # epochs/batch size mean something
    takes_conditions: bool = False  # generate() takes the parsed conditions and steers by them

    def _attr(self, name: str):
        import importlib

        return getattr(importlib.import_module(self.module), name)

    def params(self, epochs: int, batch_size: int, hyperparameters: dict[str, Any]):
        return self._attr(self.params_class)(epochs=epochs, batch_size=batch_size, **hyperparameters)

    def build(self, transformer, epochs: int, batch_size: int, hyperparameters: dict[str, Any], device,
              seed: int):
        """A fresh model of this kind over ``transformer``'s encoding."""
        params = self.params(epochs, batch_size, hyperparameters)
        return self._attr(self.model_class)(transformer, params, device, seed=seed)


MODELS: dict[str, ModelSpec] = {
    "ctgan": ModelSpec("ctgan", "CTGAN: conditional GAN (Xu et al. 2019); keeps rare categories, slow",
                       "medsyn_tabular.models.ctgan", "CTGANModel", "CTGANParams", "dp-sgd", ("loss_d",),
                       "critic", steers_conditions=True),
    "tvae": ModelSpec("tvae", "TVAE: variational autoencoder (Xu et al. 2019); fast, below ARGN on "
                              "utility", "medsyn_tabular.models.tvae", "TVAEModel", "TVAEParams", "dp-sgd",
                      ("loss",), "encoder+decoder"),
    "argn": ModelSpec("argn", "ARGN: auto-regressive network over the columns (TabularARGN, Tiwald et al. "
                              "2025); best measured utility without DP, fast", "medsyn_tabular.models.argn",
                      "ARGNModel", "ARGNParams", "dp-sgd", ("loss",), "network", takes_conditions=True),
    "mst": ModelSpec("mst", "MST: marginal-based DP (McKenna et al. 2021); best at ε ≤ 3 on small tables, "
                            "fast", "medsyn_tabular.models.aim", "AIMModel", "MSTParams", "marginals",
                     uses_batches=False),
    "aim": ModelSpec("aim", "AIM: adaptive marginal-based DP (McKenna et al. 2022); MST's refinement, "
                            "minutes per table", "medsyn_tabular.models.aim", "AIMModel", "AIMParams",
                     "marginals", uses_batches=False),
}

#: The model used without DP when the user picks none (best measured TSTR utility, docs/tabular.md).
DEFAULT_MODEL = "argn"
#: At ε ≤ this (and DP on), the marginal-based model is the default.
MARGINAL_DEFAULT_MAX_EPSILON = 3.0


def default_model(epsilon: float | None) -> str:
    """The model chosen when the user picks none: a marginal-based model (MST: AIM's rounds recompile
    the graphical model each round, minutes on a CPU) for ε ≤ 3, otherwise :data:`DEFAULT_MODEL`."""
    if epsilon is not None and epsilon <= MARGINAL_DEFAULT_MAX_EPSILON:
        return "mst"
    return DEFAULT_MODEL


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    return MODELS[name]
