"""Uncertainty for the book's measurements: exact binomial intervals for rates, bootstrap
intervals for means. Pure numpy/scipy, deterministic (the bootstrap takes a seed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["binomial_ci", "bootstrap_ci", "mcnemar", "mean_ci", "paired_difference", "rate", "sign_test"]


def binomial_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson (exact) interval for a rate of ``successes`` in ``n`` trials.

    It never covers less than ``level``; with 0 or ``n`` successes one end is 0 or 1.

    Raises:
        ValueError: ``n < 1``, ``successes`` outside ``0…n``, or ``level`` outside ``(0, 1)``.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), not {level}")
    alpha = 1 - level
    lo = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return lo, hi


def rate(outcomes: Sequence[bool], level: float = 0.95) -> dict:
    """A rate with its exact interval: ``{"rate", "ci", "n", "k"}`` (JSON-ready)."""
    k, n = int(sum(bool(o) for o in outcomes)), len(outcomes)
    return {"rate": k / n if n else float("nan"), "ci": list(binomial_ci(k, n, level)) if n else None, "n": n, "k": k}


def bootstrap_ci(values: Sequence[float], level: float = 0.95, *, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (``resamples`` draws, seeded).

    Raises:
        ValueError: fewer than two values, or a value that is not finite.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need at least two values for a bootstrap interval, got {x.size}")
    if not np.isfinite(x).all():
        raise ValueError("values must be finite")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (resamples, len(x)))].mean(1)
    alpha = 1 - level
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def mean_ci(values: Sequence[float], level: float = 0.95, *, seed: int = 0) -> dict:
    """A mean with its bootstrap interval: ``{"mean", "ci", "n"}`` (JSON-ready)."""
    x = [float(v) for v in values]
    return {"mean": float(np.mean(x)), "ci": list(bootstrap_ci(x, level, seed=seed)), "n": len(x)}


def sign_test(differences: Sequence[float]) -> float:
    """Two-sided exact sign test that positive and negative ``differences`` are equally likely
    (ties dropped); returns the p-value (1.0 when every difference is a tie)."""
    d = np.asarray(differences, dtype=np.float64)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    if pos + neg == 0:
        return 1.0
    return float(stats.binomtest(pos, pos + neg, 0.5).pvalue)


def mcnemar(first: Sequence[bool], second: Sequence[bool]) -> float:
    """Exact McNemar test for paired binary outcomes (same seeds, two conditions): a two-sided
    binomial test on the discordant pairs; returns the p-value (1.0 without discordant pairs).

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(first) != len(second):
        raise ValueError(f"paired outcomes need equal lengths, got {len(first)} and {len(second)}")
    only_second = sum(1 for a, b in zip(first, second) if b and not a)
    only_first = sum(1 for a, b in zip(first, second) if a and not b)
    if only_first + only_second == 0:
        return 1.0
    return float(stats.binomtest(only_second, only_first + only_second, 0.5).pvalue)


def paired_difference(first: Sequence[float], second: Sequence[float], level: float = 0.95, *,
                      seed: int = 0) -> dict:
    """Mean of ``second - first`` over pairs, with a bootstrap interval resampling pairs:
    ``{"mean", "ci", "n"}``. Booleans count as 0/1, so for paired rates this is the difference
    of the two rates.

    Raises:
        ValueError: the two sequences differ in length, or hold fewer than two pairs.
    """
    if len(first) != len(second):
        raise ValueError(f"paired values need equal lengths, got {len(first)} and {len(second)}")
    d = np.asarray(second, dtype=np.float64) - np.asarray(first, dtype=np.float64)
    return {"mean": float(d.mean()), "ci": list(bootstrap_ci(d, level, seed=seed)), "n": len(d)}
