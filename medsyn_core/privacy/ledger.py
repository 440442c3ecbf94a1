"""The privacy ledger: every use of the real data, with the numbers needed to recompute ε.

Saved with each model (``privacy_ledger.json``) and shown on its model card. :meth:`PrivacyLedger.total`
recomputes the total (ε, δ) from the entries alone: pure/approximate-DP mechanisms compose by addition,
and each DP-SGD entry's ε is recomputed from its (noise multiplier, sample rate, steps) history with the
named Opacus accountant.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medsyn_core.files import atomic_write_json

#: Entries whose ε is recomputed from (noise multiplier, sample rate, steps) by an accountant.
GAUSSIAN_MECHANISMS = ("dp-sgd", "dp-fedavg")


@dataclass
class LedgerEntry:
    """One mechanism applied to the real data."""

    stage: str  # 'preprocessing' or 'training'
    mechanism: str  # e.g. 'laplace-histogram', 'stable-categories', 'log-bounds', 'dp-sgd'
    target: str  # what it was applied to: a column name, 'discriminator', 'vae' …
    epsilon: float
    delta: float = 0.0
    # DP-SGD and DP-FedAvg only:
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps: int | None = None
    max_grad_norm: float | None = None
    accountant: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def recompute_epsilon(self) -> float:
        """ε of this entry from its parameters alone (DP-SGD, and DP-FedAvg's Gaussian releases of the
        averaged site updates at sample rate 1, via the accountant; a zCDP mechanism such as AIM from every
        measurement's σ and every selection's scale, through OpenDP's privacy maps)."""
        if self.mechanism in ZCDP_MECHANISMS:
            return zcdp_entry_epsilon(self.details, self.delta)
        if self.mechanism not in GAUSSIAN_MECHANISMS:
            return float(self.epsilon)
        return dpsgd_epsilon(self.accountant or "rdp", self.noise_multiplier, self.sample_rate,
                             self.steps, self.delta)


#: Mechanisms accounted in zero-concentrated DP (ρ adds up; ε from ρ and δ at the end).
ZCDP_MECHANISMS = ("aim", "mst")


def zcdp_entry_rho(details: dict[str, Any]) -> float:
    """ρ of a zCDP entry, recomputed from its ``measurements`` (discrete Gaussian σ, L2 sensitivity) and
    ``selections`` (report-noisy-max scale and L∞ sensitivity), never read from a stored ρ."""
    from medsyn_core.privacy.zcdp import gaussian_rho, noisy_max_rho

    sens = int(details.get("sensitivity", 1))
    rho = sum(gaussian_rho(m["sigma"], sens) for m in details.get("measurements", []))
    return rho + sum(noisy_max_rho(s["scale"], s["sensitivity"]) for s in details.get("selections", []))


def zcdp_entry_epsilon(details: dict[str, Any], delta: float) -> float:
    from medsyn_core.privacy.zcdp import zcdp_epsilon

    return zcdp_epsilon(zcdp_entry_rho(details), delta)


def dpsgd_epsilon(accountant: str, noise_multiplier: float, sample_rate: float, steps: int,
                  delta: float) -> float:
    """ε of ``steps`` Poisson-subsampled Gaussian steps, computed afresh by an Opacus accountant."""
    import warnings

    from opacus.accountants import create_accountant

    if steps == 0:
        return 0.0
    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():  # "optimal order is the smallest/largest alpha": ε is then an upper bound
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(acc.get_epsilon(delta=delta))


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("medsyn", "opacus", "torch", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@dataclass
class PrivacyLedger:
    """All DP mechanisms applied to one dataset of ``dataset_rows`` rows for one model."""

    dataset_rows: int
    budget: dict[str, Any] | None = None  # the requested PrivacyBudget as a dict
    entries: list[LedgerEntry] = field(default_factory=list)
    public_statistics: list[str] = field(default_factory=list)  # declared public by metadata
    library_versions: dict[str, str] = field(default_factory=library_versions)

    def add(self, entry: LedgerEntry) -> LedgerEntry:
        self.entries.append(entry)
        return entry

    def total(self, stage: str | None = None) -> tuple[float, float]:
        """Total (ε, δ) by sequential composition, recomputed from the entries (optionally one stage)."""
        chosen = [e for e in self.entries if stage is None or e.stage == stage]
        return (sum(e.recompute_epsilon() for e in chosen), sum(e.delta for e in chosen))

    def breakdown(self) -> dict[str, tuple[float, float]]:
        return {stage: self.total(stage) for stage in ("preprocessing", "training")}

    def to_dict(self) -> dict[str, Any]:
        eps, delta = self.total()
        return {**asdict(self), "total_epsilon": eps, "total_delta": delta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyLedger:
        return cls(
            dataset_rows=int(data["dataset_rows"]), budget=data.get("budget"),
            entries=[LedgerEntry(**e) for e in data.get("entries", [])],
            public_statistics=list(data.get("public_statistics", [])),
            library_versions=dict(data.get("library_versions", {})),
        )

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> PrivacyLedger:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
