"""DP-SGD through Opacus: noise calibration from a target (ε, δ), feasibility checks with advice, and
attaching a PrivacyEngine (Poisson sampling, per-sample clipping) to the network that sees real data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from medsyn_core.privacy.budget import PrivacyError
from medsyn_core.privacy.ledger import LedgerEntry, dpsgd_epsilon
from medsyn_core.privacy.settings import ACCOUNTANTS

#: Above this noise multiplier a GAN/VAE learns nothing useful; such budgets are called unreachable.
MAX_USEFUL_NOISE_MULTIPLIER = 10.0


@dataclass(frozen=True)
class DPSGDPlan:
    """Noise calibrated before training for a planned number of steps."""

    target_epsilon: float
    delta: float
    sample_rate: float  # 1 / batches per epoch = about batch size / dataset size (Poisson sampling)
    steps: int  # optimizer steps that touch real data
    noise_multiplier: float
    max_grad_norm: float
    accountant: str = "rdp"


def _noise_for(target_epsilon, delta, sample_rate, steps, accountant) -> float:
    """Smallest σ ≤ MAX_USEFUL_NOISE_MULTIPLIER whose ε ≤ target (bisection), or inf if none.

    Searching only up to the useful limit matters: accountants get very slow at huge σ.
    """
    def eps(sigma: float) -> float:
        return dpsgd_epsilon(accountant, sigma, sample_rate, steps, delta)

    hi = MAX_USEFUL_NOISE_MULTIPLIER
    if eps(hi) > target_epsilon:
        return math.inf
    lo = 0.05
    if eps(lo) <= target_epsilon:
        return lo
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        if eps(mid) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return hi


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """DP-SGD steps in one epoch: the number of batches of a loader of ``batch_size`` over ``n_rows``."""
    return math.ceil(n_rows / batch_size)


def plan_dpsgd(target_epsilon: float, delta: float, n_rows: int, batch_size: int, steps: int,
               max_grad_norm: float = 1.0, accountant: str = "rdp") -> DPSGDPlan:
    """Calibrate σ so that ``steps`` DP-SGD steps at sample rate batch/n spend ``target_epsilon``.

    The sample rate is the one Opacus' Poisson loader uses for a loader of ``batch_size``:
    q = 1 / ceil(n / batch_size) (equal to batch/n when the batch divides n); one epoch is
    ceil(n / batch_size) steps (see :func:`steps_per_epoch`).

    Raises :class:`PrivacyError` before any training when the budget is unreachable (σ would exceed
    :data:`MAX_USEFUL_NOISE_MULTIPLIER`), saying how many steps, or what batch size, would fit.
    """
    if accountant not in ACCOUNTANTS:
        raise PrivacyError(f"Unknown accountant {accountant!r}; use one of {', '.join(ACCOUNTANTS)}.")
    if not max_grad_norm > 0:
        raise PrivacyError(f"The clipping norm must be positive (got {max_grad_norm}).")
    if batch_size < 1 or steps < 1:
        raise PrivacyError("DP-SGD needs a batch size and a number of steps of at least 1.")
    if batch_size >= n_rows:
        raise PrivacyError(
            f"The batch size ({batch_size}) must be smaller than the number of rows ({n_rows}) for "
            "DP-SGD's subsampling; choose a batch size below "
            f"{max(1, n_rows // 4)}.")
    q = 1.0 / steps_per_epoch(n_rows, batch_size)
    sigma = _noise_for(target_epsilon, delta, q, steps, accountant)
    if sigma > MAX_USEFUL_NOISE_MULTIPLIER:
        lo, hi = 0, steps  # largest step count that stays under the noise limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _noise_for(target_epsilon, delta, q, mid, accountant) <= MAX_USEFUL_NOISE_MULTIPLIER:
                lo = mid
            else:
                hi = mid - 1
        advice = (f"Use at most {lo} training steps (about {lo * q:.1f} epochs) at this batch size, or "
                  "raise ε" if lo > 0 else "Even one step is too many at this ε: use more rows or raise ε")
        raise PrivacyError(
            f"ε = {target_epsilon:g} cannot be met with {n_rows} rows, batch size {batch_size} and "
            f"{steps} steps: the noise multiplier would have to exceed σ = "
            f"{MAX_USEFUL_NOISE_MULTIPLIER:g}, where nothing useful is learned. {advice}.")
    return DPSGDPlan(target_epsilon, delta, q, steps, sigma, max_grad_norm, accountant)


def replace_unsupported_layers(module):
    """Replace layers Opacus cannot handle (BatchNorm → GroupNorm, …); returns (module, replaced names)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(module, strict=False)
    if not errors:
        return module, []
    fixed = ModuleValidator.fix(module)
    ModuleValidator.validate(fixed, strict=True)
    return fixed, sorted({type(e).__name__ + ": " + str(e).split("\n")[0] for e in errors})


def entropy_generator(device="cpu"):
    """A torch generator on ``device`` seeded with 63 bits from the operating system's entropy pool.

    DP-SGD's Gaussian noise and Poisson batch sampling draw from such generators, never from torch's
    global generator, which ``fit`` seeds with the published training seed: with that seed an adversary
    holding the released model and all rows but one could replay training and test membership exactly.
    """
    import secrets

    import torch

    return torch.Generator(device=device).manual_seed(secrets.randbits(63))


def make_private(plan: DPSGDPlan, module, optimizer, data_loader):
    """Attach Opacus to ``module``/``optimizer``/``data_loader`` with Poisson sampling and per-sample
    clipping at ``plan.noise_multiplier``. Returns (engine, module, optimizer, data_loader).

    Randomness: the Poisson sampler and the Gaussian noise each get their own generator seeded from OS
    entropy (:func:`entropy_generator`), so a DP fit cannot be replayed from its seed; the noise is drawn
    with Opacus' floating-point-hardened sampler (the sum of 4 Gaussians, Holohan & Braghin 2021) that
    its ``secure_mode`` uses. Opacus' ``secure_mode=True`` itself would need ``torchcsprng``, which is
    unmaintained and has no build for the pinned torch, so the generators are torch's own (Mersenne
    Twister on the CPU, Philox on CUDA) with a fresh secret 63-bit seed per run; see docs/privacy.md.
    """
    import warnings

    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader

    if abs(1.0 / len(data_loader) - plan.sample_rate) > 1e-12:
        raise ValueError(f"The data loader has {len(data_loader)} batches per epoch, but the plan assumed a "
                         f"sample rate of {plan.sample_rate:g}; plan with the loader's batch size.")
    # Opacus' Poisson loader takes the original loader's generator: give it a secret one
    data_loader = DataLoader(data_loader.dataset, batch_size=data_loader.batch_size,
                             generator=entropy_generator("cpu"))
    device = next(module.parameters()).device
    # Opacus' per-sample hooks fire with respect to module outputs when the inputs need no gradient (real
    # rows never do): expected, and said once per process otherwise
    warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")
    with warnings.catch_warnings():  # secure_mode=False: see the docstring (the noise is hardened below)
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=plan.accountant, secure_mode=False)
    module, optimizer, data_loader = engine.make_private(
        module=module, optimizer=optimizer, data_loader=data_loader,
        noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
        poisson_sampling=True, noise_generator=entropy_generator(device),
    )
    optimizer.secure_mode = True  # Opacus' hardened Gaussian sampling, with the secret generator above
    return engine, module, optimizer, data_loader


def training_entry(plan: DPSGDPlan, engine, target: str) -> LedgerEntry:
    """Ledger entry for a finished DP-SGD run, ε read back from the engine's accountant."""
    history = list(engine.accountant.history)
    steps = int(sum(h[2] for h in history))
    if any(abs(h[0] - plan.noise_multiplier) > 1e-12 or abs(h[1] - plan.sample_rate) > 1e-12
           for h in history):
        raise RuntimeError("DP-SGD ran with another noise multiplier or sample rate than planned.")
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        spent = float(engine.get_epsilon(plan.delta)) if steps else 0.0
    recomputed = dpsgd_epsilon(plan.accountant, plan.noise_multiplier, plan.sample_rate, steps,
                               plan.delta)
    if steps and abs(spent - recomputed) > 1e-6 * max(1.0, spent):
        raise RuntimeError(f"Accountant mismatch: engine says ε={spent}, recomputation {recomputed}.")
    return LedgerEntry(
        stage="training", mechanism="dp-sgd", target=target, epsilon=spent, delta=plan.delta,
        noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate, steps=steps,
        max_grad_norm=plan.max_grad_norm, accountant=plan.accountant,
        details={"planned_steps": plan.steps, "target_epsilon": plan.target_epsilon,
                 "poisson_sampling": True, "clipping": "flat per-sample"},
    )
