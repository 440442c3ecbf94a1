"""Training settings chosen for the user: what the tabular engine uses when batch size or epochs are left
unset (``None``).

Without differential privacy the defaults are fixed (:data:`BATCH_SIZE`, :data:`EPOCHS`). Under DP a
fixed batch of 500 cannot work on small tables (DP-SGD's subsampling needs a batch well below n, and a
303-row table has no room for 300 epochs of noise at ε = 3), so :func:`dp_training_defaults` picks them
from the public numbers n (privacy units) and ε by this rule:

1. **Batch size**: about 5 % of the rows (sample rate q ≈ 1/20), rounded to a multiple of 10, between 10
   and 500, and at most half the rows. Small batches keep q low, which is what the accountant rewards.
2. **Epochs**: as many as the training share of ε allows at noise multiplier σ = :data:`TARGET_SIGMA`
   (where DP-SGD still learns well), at most :data:`EPOCHS`. If that is fewer than
   :data:`MIN_DP_EPOCHS`, up to :data:`MIN_DP_EPOCHS` epochs at whatever σ ≤ :data:`FALLBACK_SIGMA` allows
   (weak privacy budgets on small tables: few, noisy epochs rather than none).
3. If not even one epoch fits below σ = :data:`FALLBACK_SIGMA`, the budget is unreachable: a
   :class:`~medsyn_core.privacy.PrivacyError` says to raise ε or use more rows.

The σ itself is then calibrated exactly by :func:`medsyn_core.privacy.dpsgd.plan_dpsgd` for these numbers.
Only public numbers (n, ε, δ) are read, so choosing the defaults costs no privacy budget.
"""

from __future__ import annotations

from typing import NamedTuple

BATCH_SIZE = 500  # without DP
EPOCHS = 300  # without DP; also the most epochs the DP rule picks
#: Noise multiplier the DP rule aims at, and the largest it accepts for the minimum number of epochs.
TARGET_SIGMA, FALLBACK_SIGMA = 2.0, 8.0
MIN_DP_EPOCHS = 10
#: Batch size as a share of the rows under DP (sample rate about 1/20).
DP_BATCH_SHARE = 0.05


class TrainingDefaults(NamedTuple):
    """The chosen settings (a tuple ``(batch_size, epochs)``)."""

    batch_size: int
    epochs: int


def dp_batch_size(n_rows: int) -> int:
    """Rule 1: about 5 % of the rows, a multiple of 10 in [10, 500], at most half the rows."""
    size = int(round(n_rows * DP_BATCH_SHARE / 10.0)) * 10
    return max(2, min(max(10, min(size, BATCH_SIZE)), n_rows // 2))


def _most_epochs(n_rows: int, batch_size: int, epsilon: float, delta: float, sigma: float, cap: int,
                 accountant: str) -> int:
    """The most epochs (≤ cap) whose DP-SGD ε at noise ``sigma`` stays within ``epsilon`` (bisection on
    the accountant's ε, which grows with the number of steps)."""
    from medsyn_core.privacy.dpsgd import steps_per_epoch
    from medsyn_core.privacy.ledger import dpsgd_epsilon

    per_epoch = steps_per_epoch(n_rows, batch_size)
    q = 1.0 / per_epoch
    lo, hi = 0, cap
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if dpsgd_epsilon(accountant, sigma, q, mid * per_epoch, delta) <= epsilon:
            lo = mid
        else:
            hi = mid - 1
    return lo


def dp_training_defaults(n_rows: int, epsilon: float, model: str = "ctgan", delta: float | None = None,
                         preprocessing_share: float | None = None,
                         accountant: str = "rdp") -> TrainingDefaults:
    """``(batch_size, epochs)`` for DP training of ``model`` on ``n_rows`` privacy units at total ``epsilon``
    (δ and the preprocessing share as :class:`~medsyn_core.privacy.PrivacyBudget` defaults them), by the
    rule in the module docstring. Raises PrivacyError when no epoch fits."""
    from medsyn_core.privacy import PrivacyBudget, PrivacyError
    from medsyn_core.privacy.budget import DEFAULT_PREPROCESSING_SHARE

    if model not in ("ctgan", "tvae"):
        raise ValueError(f"Unknown model {model!r}; choose 'ctgan' or 'tvae'.")
    share = DEFAULT_PREPROCESSING_SHARE if preprocessing_share is None else preprocessing_share
    budget = PrivacyBudget.create(n_rows, epsilon, delta, None, share)
    if budget is None:
        return TrainingDefaults(BATCH_SIZE, EPOCHS)
    batch = dp_batch_size(n_rows)
    args = (n_rows, batch, budget.epsilon_training, budget.delta_training)
    epochs = _most_epochs(*args, TARGET_SIGMA, EPOCHS, accountant)
    if epochs < MIN_DP_EPOCHS:
        epochs = max(epochs, _most_epochs(*args, FALLBACK_SIGMA, MIN_DP_EPOCHS, accountant))
    if epochs < 1:
        raise PrivacyError(
            f"ε = {epsilon:g} is too small for {n_rows} rows: even one epoch of DP training (batch size "
            f"{batch}) would need more noise than σ = {FALLBACK_SIGMA:g}, where nothing useful is learned. "
            "Raise ε (e.g. the balanced preset, ε = 3) or train on more rows.")
    return TrainingDefaults(batch, epochs)
