"""DP mechanisms for the statistics that preprocessing takes from real data.

Neighbouring datasets differ by adding or removing one row (the same notion Opacus' accountants use), so
each row changes a histogram by 1 in one bin: L1 sensitivity 1, Laplace noise of scale 1/ε.

Noise comes from a NumPy generator seeded from the operating system's entropy (not from the user's
training seed, which would make the noise reproducible and therefore removable). Floating-point Laplace
sampling is not hardened against the attacks of Mironov (2012); see the README's privacy section.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np

from medsyn_core.privacy.budget import PrivacyError


def noise_rng() -> np.random.Generator:
    """A generator seeded from OS entropy; never from the reproducibility seed."""
    return np.random.Generator(np.random.PCG64(secrets.randbits(128)))


def _check_epsilon(epsilon: float) -> None:
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise PrivacyError(f"Each DP mechanism needs ε > 0 (got {epsilon!r}).")


def laplace_histogram(counts: np.ndarray, epsilon: float,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """ε-DP counts: each bin plus Laplace(1/ε) noise (float array, may be negative)."""
    _check_epsilon(epsilon)
    rng = rng or noise_rng()
    counts = np.asarray(counts, dtype=np.float64)
    return counts + rng.laplace(0.0, 1.0 / epsilon, size=counts.shape)


def stable_threshold(epsilon: float, delta: float) -> float:
    """Noisy-count threshold above which an observed category may be released with (ε, δ)-DP.

    A category held by a single row passes ``1 + Lap(1/ε) ≥ τ`` with probability ½·exp(-ε(τ-1)) ≤ δ.
    """
    _check_epsilon(epsilon)
    if not 0 < delta < 1:
        raise PrivacyError(f"The category threshold needs 0 < δ < 1 (got {delta!r}).")
    return 1.0 + math.log(1.0 / (2.0 * delta)) / epsilon


@dataclass(frozen=True)
class NoisyCategories:
    """Categories released by :func:`stable_categories` with their noisy counts (kept ≥ 0)."""

    categories: list
    noisy_counts: np.ndarray
    threshold: float
    n_suppressed_noisy: float  # noisy total of all suppressed rows (for an 'other' group)


def stable_categories(values: np.ndarray, epsilon: float, delta: float,
                      rng: np.random.Generator | None = None) -> NoisyCategories:
    """(ε, δ)-DP release of which categories occur and how often, when the domain is not public.

    Counts of observed categories get Laplace(1/ε) noise; only those above :func:`stable_threshold`
    are released, so a category held by few patients is never revealed. The number of suppressed rows
    is the noisy total minus the released counts (post-processing).
    """
    rng = rng or noise_rng()
    uniques, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    noisy = laplace_histogram(counts, epsilon, rng)
    tau = stable_threshold(epsilon, delta)
    keep = noisy >= tau
    suppressed = float(np.clip(noisy[~keep], 0, None).sum())
    return NoisyCategories(list(uniques[keep]), np.clip(noisy[keep], 0, None), tau, suppressed)


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


def approx_bounds(values: np.ndarray, epsilon: float,
                  rng: np.random.Generator | None = None) -> tuple[float, float]:
    """ε-DP (lower, upper) bounds of a numeric column with no public range.

    A Laplace histogram over public power-of-two magnitude bins; the bounds are the outer edges of the
    lowest and highest bins whose noisy count exceeds ln(n_bins / (2·10⁻³))/ε, so that an empty bin
    passes with probability below 10⁻³ over all bins (post-processing, no extra cost). Values
    outside the returned range are clipped by the caller. Raises when no bin passes (too few rows or
    too small an ε to learn a range): then the user must declare the bounds as public metadata.
    """
    rng = rng or noise_rng()
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n_bins = 2 * (_LOG2_MAX - _LOG2_MIN + 1) + 1
    counts = np.bincount(_log_bin_index(x), minlength=n_bins) if x.size else np.zeros(n_bins)
    noisy = laplace_histogram(counts, epsilon, rng)
    threshold = math.log(n_bins / (2 * 1e-3)) / epsilon
    passing = np.flatnonzero(noisy > threshold)
    if passing.size == 0:
        raise PrivacyError(
            "Not enough rows to estimate this column's range privately at this ε. Declare its bounds "
            "as public metadata (e.g. age 0-120) or raise ε.")
    lo = _log_bin_edges(int(passing[0]))[0]
    hi = _log_bin_edges(int(passing[-1]))[1]
    return float(lo), float(hi)


def numeric_histogram(values: np.ndarray, lower: float, upper: float, bins: int, epsilon: float,
                      rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """ε-DP histogram of a numeric column clipped to public/DP bounds, with missing values as one more
    bin (each row lands in exactly one bin, so the whole release costs ε once).

    Returns (bin edges (bins+1,), noisy non-negative counts (bins,), noisy missing rate in [0, 1]).
    """
    if not upper > lower:
        raise PrivacyError(f"Bounds must satisfy lower < upper (got {lower}, {upper}).")
    x = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(x)
    edges = np.linspace(lower, upper, bins + 1)
    counts, _ = np.histogram(np.clip(x[~missing], lower, upper), bins=edges)
    noisy = np.clip(laplace_histogram(np.append(counts, missing.sum()), epsilon, rng), 0, None)
    total = noisy.sum()
    missing_rate = float(noisy[-1] / total) if total > 0 else 0.0
    return edges, noisy[:-1], missing_rate
