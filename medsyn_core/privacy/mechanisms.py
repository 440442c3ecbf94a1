"""DP mechanisms for the statistics that preprocessing takes from real data.

Every statistic released here is a vector of integer counts (a histogram), so the mechanism is the
**discrete Laplace** (geometric) mechanism: each count plus an integer drawn from the two-sided geometric
distribution with scale ``sensitivity / ε``. It is sampled by OpenDP (``opendp.measurements.make_laplace``
on integer vectors), which draws from the operating system's cryptographically secure generator with
exact integer arithmetic: the noise never comes from the user's training seed (which would make it
replayable) and the floating-point attacks on Laplace sampling (Mironov 2012) do not apply to integer
outputs.

Neighbouring datasets differ by adding or removing one privacy unit (a row, or a patient with at most
``sensitivity`` rows), so one unit changes a histogram by at most ``sensitivity`` in L1 norm.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from medsyn_core.privacy.budget import PrivacyError


def _check_epsilon(epsilon: float) -> None:
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise PrivacyError(f"Each DP mechanism needs ε > 0 (got {epsilon!r}).")


def _check_sensitivity(sensitivity: int) -> int:
    if isinstance(sensitivity, bool) or int(sensitivity) != sensitivity or sensitivity < 1:
        raise PrivacyError(f"The sensitivity (rows per privacy unit) must be a whole number ≥ 1 "
                           f"(got {sensitivity!r}).")
    return int(sensitivity)


@functools.lru_cache(maxsize=64)
def _discrete_laplace(scale: float):
    """OpenDP measurement: integer vector -> integer vector + discrete Laplace(scale) noise (OS CSPRNG)."""
    import opendp.prelude as dp

    # make_laplace on integers is in OpenDP's "contrib" set (implemented and documented, proof under review)
    dp.enable_features("contrib")
    return dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale)


def laplace_histogram(counts: np.ndarray, epsilon: float, sensitivity: int = 1) -> np.ndarray:
    """ε-DP counts: each bin plus discrete Laplace noise of scale ``sensitivity / ε`` (int64 array, may be
    negative). ``counts`` must hold whole numbers (a histogram)."""
    _check_epsilon(epsilon)
    k = _check_sensitivity(sensitivity)
    counts = np.asarray(counts)
    flat = counts.ravel()
    if flat.size and not np.all(np.mod(flat, 1) == 0):
        raise ValueError("laplace_histogram releases counts: every bin must be a whole number.")
    if flat.size == 0:
        return np.zeros(counts.shape, dtype=np.int64)
    measurement = _discrete_laplace(k / epsilon)
    noisy = measurement([int(c) for c in flat])
    return np.asarray(noisy, dtype=np.int64).reshape(counts.shape)


def laplace_epsilon(scale: float, sensitivity: int = 1) -> float:
    """ε of the discrete Laplace mechanism at ``scale`` for an L1 sensitivity, as OpenDP's privacy map
    states it (used to check the ledger)."""
    return float(_discrete_laplace(scale).map(int(sensitivity)))


def stable_threshold(epsilon: float, delta: float, sensitivity: int = 1) -> float:
    """Noisy-count threshold above which an observed category may be released with (ε, δ)-DP.

    A category held only by one unit has a count of at most k = ``sensitivity``; with discrete Laplace
    noise of scale k/ε, P[count + Z ≥ τ] ≤ P[Z ≥ τ - k] ≤ exp(-ε (τ - k) / k) = δ for
    τ = k + k·ln(1/δ)/ε.
    """
    _check_epsilon(epsilon)
    k = _check_sensitivity(sensitivity)
    if not 0 < delta < 1:
        raise PrivacyError(f"The category threshold needs 0 < δ < 1 (got {delta!r}).")
    return k + k * math.log(1.0 / delta) / epsilon


@dataclass(frozen=True)
class NoisyCategories:
    """Categories released by :func:`stable_categories` with their noisy counts (kept ≥ 0)."""

    categories: list
    noisy_counts: np.ndarray
    threshold: float

    def suppressed(self, n_public: int) -> float:
        """Estimated rows in unreleased categories: the public row count minus the released noisy counts
        (post-processing). The noisy counts of the suppressed categories themselves are never used: they
        exist only when some category is rare, so even "zero" would reveal that none is."""
        return max(0.0, float(n_public) - float(self.noisy_counts.sum()))


def stable_categories(values: np.ndarray, epsilon: float, delta: float,
                      sensitivity: int = 1) -> NoisyCategories:
    """(ε, δ)-DP release of which categories occur and how often, when the domain is not public.

    Counts of observed categories get discrete Laplace noise; only those above :func:`stable_threshold`
    are released, so a category held by few patients is never revealed. The rows in suppressed
    categories are estimated from the public row count (:meth:`NoisyCategories.suppressed`).
    """
    uniques, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    noisy = laplace_histogram(counts, epsilon, sensitivity).astype(float)
    tau = stable_threshold(epsilon, delta, sensitivity)
    keep = noisy >= tau
    return NoisyCategories(list(uniques[keep]), np.clip(noisy[keep], 0, None), tau)


#: Public bin edges for :func:`approx_bounds`: ±2^k for k in [-16, 48] and zero.
_LOG2_MIN, _LOG2_MAX = -16, 48


def _log_bin_index(x: np.ndarray) -> np.ndarray:
    """Map values to public magnitude bins: negative bins, zero, positive bins (monotone in x)."""
    n_side = _LOG2_MAX - _LOG2_MIN + 1
    mag = np.floor(np.log2(np.clip(np.abs(x), 2.0**_LOG2_MIN, 2.0**_LOG2_MAX)))
    k = (mag - _LOG2_MIN).astype(int)  # 0 .. n_side-1
    idx = np.where(x > 0, n_side + 1 + k, np.where(x < 0, n_side - 1 - k, n_side))
    return idx.astype(int)


def _log_bin_edges(index: int) -> tuple[float, float]:
    n_side = _LOG2_MAX - _LOG2_MIN + 1
    if index == n_side:
        return 0.0, 0.0
    if index > n_side:
        k = index - n_side - 1 + _LOG2_MIN
        return 2.0**k, 2.0 ** (k + 1)
    k = n_side - 1 - index + _LOG2_MIN
    return -(2.0 ** (k + 1)), -(2.0**k)


def approx_bounds(values: np.ndarray, epsilon: float, sensitivity: int = 1) -> tuple[float, float]:
    """ε-DP (lower, upper) bounds of a numeric column with no public range.

    A discrete-Laplace histogram over public power-of-two magnitude bins; the bounds are the outer edges
    of the lowest and highest bins whose noisy count exceeds k·ln(n_bins / 10⁻³)/ε, so that an empty bin
    passes with probability below 10⁻³ over all bins (post-processing, no extra cost). Values outside the
    returned range are clipped by the caller. Raises when no bin passes (too few rows or too small an ε
    to learn a range): then the user must declare the bounds as public metadata.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n_bins = 2 * (_LOG2_MAX - _LOG2_MIN + 1) + 1
    counts = np.bincount(_log_bin_index(x), minlength=n_bins) if x.size else np.zeros(n_bins, dtype=int)
    noisy = laplace_histogram(counts, epsilon, sensitivity)
    threshold = sensitivity * math.log(n_bins / 1e-3) / epsilon
    passing = np.flatnonzero(noisy > threshold)
    if passing.size == 0:
        raise PrivacyError(
            "Not enough rows to estimate this column's range privately at this ε. Declare its bounds "
            "as public metadata (e.g. age 0-120) or raise ε.")
    lo = _log_bin_edges(int(passing[0]))[0]
    hi = _log_bin_edges(int(passing[-1]))[1]
    return float(lo), float(hi)


def numeric_histogram(values: np.ndarray, lower: float, upper: float, bins: int, epsilon: float,
                      sensitivity: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    """ε-DP histogram of a numeric column clipped to public/DP bounds, with missing values as one more
    bin (each row lands in exactly one bin, so the whole release costs ε once).

    Returns (bin edges (bins+1,), noisy non-negative counts (bins,) float, noisy missing count ≥ 0).
    The caller decides how to turn the missing count into a rate (see :func:`missing_rate`).
    """
    if not upper > lower:
        raise PrivacyError(f"Bounds must satisfy lower < upper (got {lower}, {upper}).")
    x = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(x)
    edges = np.linspace(lower, upper, bins + 1)
    counts, _ = np.histogram(np.clip(x[~missing], lower, upper), bins=edges)
    noisy = np.clip(laplace_histogram(np.append(counts, missing.sum()), epsilon, sensitivity), 0, None)
    return edges, noisy[:-1].astype(float), int(noisy[-1])


def missing_rate_of_n(noisy_missing: float, n_public: int, noise_scale: float) -> float:
    """Missing rate from the noisy missing bin of a column's own histogram and the public number of rows
    (post-processing). A noisy count below one noise standard deviation (√2 · scale) gives 0, so a
    complete column is generated complete unless the data says otherwise.

    Dividing by n instead of the noisy total of the histogram matters: the total sums every bin's
    zero-clipped noise (32 empty bins at scale 23 add about 370 rows to a 600-row table), which made
    the rate about 40 % too small."""
    if n_public < 1:
        return 0.0
    count = float(noisy_missing)
    if count < math.sqrt(2.0) * noise_scale:
        return 0.0
    return float(min(1.0, count / n_public))


def missing_rate(noisy_missing: float, noisy_present_total: float) -> float:
    """Missing rate from noisy counts of the column's own histogram (post-processing): the share of the
    missing bin in the noisy total, with half a count added to each side (a rate is never exactly 0 or 1
    because noise clipped at zero says nothing exact)."""
    missing = max(0.0, float(noisy_missing)) + 0.5
    present = max(0.0, float(noisy_present_total)) + 0.5
    return missing / (missing + present)


def os_entropy_rng() -> np.random.Generator:
    """A NumPy generator seeded with 128 bits from the OS entropy pool, for DP-relevant random choices
    that are not noise (e.g. which of a patient's rows is kept); never the reproducibility seed."""
    import secrets

    return np.random.Generator(np.random.PCG64(secrets.randbits(128)))
