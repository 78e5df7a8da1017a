"""The error bars of time averages (simcore.analysis._frames): the integrated
autocorrelation time against the closed form of an AR(1) series, and the coverage of
the error bar when the blocks are shorter than the correlation time."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from simcore.analysis._frames import MIN_INDEPENDENT_SAMPLES, block_mean, integrated_time


def ar1(phi: float, n: int, rng, replicas: int = 1) -> np.ndarray:
    """x_t = φ x_{t-1} + √(1-φ²) ε_t, stationary start: unit variance, τ = (1+φ)/(1-φ)."""
    x = np.empty((replicas, n))
    x[:, 0] = rng.standard_normal(replicas)
    noise = rng.standard_normal((replicas, n)) * math.sqrt(1 - phi * phi)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_integrated_time_of_an_ar1_series(phi):
    """Sokal's windowed estimate has a relative error of about √(2(2M+1)/N) with M ≈ 5τ:
    at N = 2e5 and τ ≤ 19 at most 4.4 %; 4 of them is the tolerance."""
    tau = integrated_time(ar1(phi, 200_000, np.random.default_rng(1))[0])
    exact = (1 + phi) / (1 - phi)
    assert tau == pytest.approx(exact, rel=4 * math.sqrt(2 * (10 * exact + 1) / 200_000))


def test_error_bars_cover_the_mean_when_blocks_are_shorter_than_the_correlation():
    """400 AR(1) series of 2000 samples with τ = 19, in 100 blocks of 20 samples (about
    one correlation time: the block error alone is too small, and held the true mean 0
    within 2 errors in 85 % of the series). The error bar must do so in about 95 %: the
    binomial standard deviation is 1.1 %, and the estimated τ's own spread (~20 % on the
    error) lowers the coverage by ~2 %, so at least 90 %."""
    series = ar1(0.9, 2000, np.random.default_rng(2), replicas=400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 105 independent samples each: no warning
        results = [block_mean(s, 100) for s in series]
    inside = np.mean([abs(m) < 2 * e for m, e in results])
    assert 0.90 <= inside <= 0.99, inside


def test_too_few_independent_samples_are_said_and_a_constant_is_exact():
    """Two frames cannot give an error bar, however equal; a long constant series is
    exact (an observable that does not fluctuate)."""
    with pytest.warns(UserWarning, match=f"about 2.0 independent samples .* fewer than "
                                         f"{MIN_INDEPENDENT_SAMPLES}"):
        mean, err = block_mean([0.5, 0.5])  # a run too short to tell (2 identical frames)
    assert mean == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert block_mean(np.full(500, 2.5)) == (2.5, 0.0)  # a constant has no error
