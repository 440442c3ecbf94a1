"""Zero-concentrated DP (zCDP) mechanisms for marginal-based synthesizers (AIM, MST), sampled by OpenDP.

A ρ-zCDP guarantee composes by adding ρ; the total is converted to (ε, δ)-DP with OpenDP's
``make_zCDP_to_approxDP`` (the tight conversion of Canonne, Kamath & Steinke 2020), so the ledger's ε is
recomputed by the same library that sampled the noise, never by a hand-written formula.

* :func:`gaussian_counts`: a marginal (a vector of whole counts) plus **discrete Gaussian** noise of
  scale σ; one privacy unit changes one count by one (L2 sensitivity k), so it is k²/(2σ²)-zCDP.
* :func:`noisy_max`: the exponential mechanism as report-noisy-max (Gumbel noise), selecting the index
  of the largest score; scores of L∞ sensitivity Δ at scale s cost Δ²/(2s²) (OpenDP's privacy map).

Both draw from the operating system's CSPRNG inside OpenDP: the training seed never reaches the noise.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from medsyn_core.privacy.budget import PrivacyError


def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")  # integer Gaussian and noisy max are in OpenDP's contrib set
    return dp


@functools.lru_cache(maxsize=256)
def _gaussian(scale: float):
    dp = _opendp()
    return dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=float), scale=scale)


def gaussian_counts(counts: np.ndarray, sigma: float, sensitivity: int = 1) -> tuple[np.ndarray, float]:
    """(noisy counts (same shape, int64), ρ spent) for whole ``counts`` with discrete Gaussian noise σ."""
    if not (sigma > 0 and math.isfinite(sigma)):
        raise PrivacyError(f"The Gaussian noise scale must be positive (got {sigma!r}).")
    counts = np.asarray(counts)
    flat = [int(c) for c in counts.ravel()]
    measurement = _gaussian(float(sigma))
    noisy = np.asarray(measurement(flat), dtype=np.int64).reshape(counts.shape)
    return noisy, float(measurement.map(float(sensitivity)))


def gaussian_rho(sigma: float, sensitivity: int = 1) -> float:
    """ρ of one discrete Gaussian measurement at scale σ (OpenDP's privacy map)."""
    return float(_gaussian(float(sigma)).map(float(sensitivity)))


@functools.lru_cache(maxsize=256)
def _noisy_max(scale: float):
    dp = _opendp()
    scores = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    zcdp = dp.zero_concentrated_divergence()
    return dp.m.make_noisy_max(scores, dp.linf_distance(T=float), zcdp, scale=scale)


def noisy_max(scores: np.ndarray, rho: float, sensitivity: float) -> tuple[int, float]:
    """(index of the selected score, ρ spent): report-noisy-max over ``scores`` calibrated to ``rho``."""
    if not (rho > 0 and math.isfinite(rho)):
        raise PrivacyError(f"The selection step needs ρ > 0 (got {rho!r}).")
    scale = float(sensitivity) / math.sqrt(2.0 * rho)
    measurement = _noisy_max(scale)
    index = int(measurement([float(s) for s in np.asarray(scores, dtype=float)]))
    return index, float(measurement.map(float(sensitivity)))


def noisy_max_rho(scale: float, sensitivity: float) -> float:
    return float(_noisy_max(float(scale)).map(float(sensitivity)))


def zcdp_epsilon(rho: float, delta: float) -> float:
    """ε such that ρ-zCDP implies (ε, δ)-DP (OpenDP ``make_zCDP_to_approxDP``)."""
    if rho <= 0:
        return 0.0
    dp = _opendp()
    # a Gaussian measurement whose map at sensitivity 1 is exactly ρ carries the conversion
    scale = 1.0 / math.sqrt(2.0 * rho)
    converted = dp.c.make_zCDP_to_approxDP(_gaussian(scale))
    return float(converted.map(1.0).epsilon(float(delta)))


def zcdp_rho(epsilon: float, delta: float) -> float:
    """The largest ρ whose (ε, δ) conversion stays within ``epsilon`` (bisection on :func:`zcdp_epsilon`;
    the returned ρ errs on the small side)."""
    if not (epsilon > 0 and 0 < delta < 1):
        raise PrivacyError(f"zCDP needs ε > 0 and 0 < δ < 1 (got ε = {epsilon!r}, δ = {delta!r}).")
    lo, hi = 0.0, max(1.0, epsilon)
    while zcdp_epsilon(hi, delta) < epsilon:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if zcdp_epsilon(mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo
