"""Counter-based noise: the ziggurat normals are standard normal, sincos matches libm."""

import math

import numpy as np
from numba import njit
from scipy import stats

from simcore import rng

N_DRAWS = 2_000_000


@njit(cache=True)
def _normals(key, n, component):
    out = np.empty(n)
    for i in range(n):
        out[i] = rng.normal(rng.stream_base(key, 11, i), component)
    return out


@njit(cache=True)
def _sincos(theta):
    s = np.empty(theta.size)
    c = np.empty(theta.size)
    for i in range(theta.size):
        s[i], c[i] = rng.sincos(theta[i])
    return s, c


def test_ziggurat_normals_are_standard_normal():
    x = _normals(rng.kernel_key(5), N_DRAWS, 0)
    n = x.size
    # moments within 5 standard errors of N(0, 1): se(mean) = 1/√n, se(var) = √(2/n)
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.var() - 1.0) < 5 * math.sqrt(2.0 / n)
    assert abs(stats.skew(x)) < 5 * math.sqrt(6.0 / n)
    assert abs(stats.kurtosis(x)) < 5 * math.sqrt(24.0 / n)
    assert stats.kstest(x, "norm").pvalue > 1e-4
    # the tail beyond the ziggurat's base strip (r = 3.654) is drawn by a separate branch:
    # its frequency must be the normal's, within 5 binomial standard deviations
    for cut in (rng._ZIG_R, 4.5):
        p = 2 * stats.norm.sf(cut)
        assert abs((np.abs(x) > cut).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # distinct components of one base are independent streams
    y = _normals(rng.kernel_key(5), N_DRAWS, 1)
    assert abs(np.corrcoef(x, y)[0, 1]) < 5 / math.sqrt(n)


def test_ziggurat_is_a_pure_function_of_the_counter():
    a = _normals(rng.kernel_key(9), 1000, 2)
    b = _normals(rng.kernel_key(9), 1000, 2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, _normals(rng.kernel_key(10), 1000, 2))


def test_sincos_matches_libm_to_an_ulp():
    theta = np.random.default_rng(0).uniform(-8 * math.pi, 8 * math.pi, 200_000)
    theta = np.concatenate([theta, [0.0, -0.0, math.pi, -math.pi, math.pi / 2, -math.pi / 4,
                                    math.pi / 4, 3 * math.pi / 4, 1e-300]])
    s, c = _sincos(theta)
    assert np.max(np.abs(s - np.sin(theta))) <= 2.3e-16
    assert np.max(np.abs(c - np.cos(theta))) <= 2.3e-16
