"""Intervals the book's reports rest on: exact binomial for rates, a seeded bootstrap for means."""

from __future__ import annotations

import numpy as np
import pytest

from sdprobe.analysis.stats import binomial_ci, bootstrap_ci, rate


def test_binomial_ci_matches_clopper_pearson_values():
    assert binomial_ci(0, 10) == (0.0, pytest.approx(0.3085, abs=1e-4))
    assert binomial_ci(10, 10) == (pytest.approx(0.6915, abs=1e-4), 1.0)
    lo, hi = binomial_ci(50, 100)
    assert lo == pytest.approx(0.3983, abs=1e-4) and hi == pytest.approx(0.6017, abs=1e-4)


def test_binomial_ci_narrows_as_the_sample_grows():
    widths = [np.subtract(*binomial_ci(n // 2, n)[::-1]) for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2]


@pytest.mark.parametrize("k, n, level", [(-1, 10, 0.95), (11, 10, 0.95), (0, 0, 0.95), (3, 10, 1.0)])
def test_binomial_ci_rejects_impossible_counts(k, n, level):
    with pytest.raises(ValueError):
        binomial_ci(k, n, level)


def test_rate_counts_and_bounds_its_outcomes():
    r = rate([True, False, True, True])
    assert r["k"] == 3 and r["n"] == 4 and r["rate"] == 0.75
    assert r["ci"][0] < 0.75 < r["ci"][1]


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.6, 0.1, 64)
    a, b = bootstrap_ci(values), bootstrap_ci(values)
    assert a == b and a[0] < values.mean() < a[1]
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)  # no spread, no width


@pytest.mark.parametrize("values", [[0.3], [0.1, float("nan")]])
def test_bootstrap_ci_refuses_too_few_or_non_finite_values(values):
    with pytest.raises(ValueError):
        bootstrap_ci(values)
