"""Counter-based random numbers for the Numba kernels.

Every random number is a pure function of (run key, step, particle, component), hashed
with the SplitMix64 finaliser. Compared with a sequential generator this gives

* results independent of the thread count (agents may be processed in any order),
* trivial checkpoints: the state is just the step counter, so ``--resume`` is exact,
* no shared state between threads.

The run key is derived from the run's seed with ``numpy.random.SeedSequence``, so the
kernel streams of different seeds are unrelated (and unrelated to the PCG64 stream
used for initial conditions).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

_GOLDEN = uint64(0x9E3779B97F4A7C15)
_M1 = uint64(0xBF58476D1CE4E5B9)
_M2 = uint64(0x94D049BB133111EB)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53


def kernel_key(seed: int) -> np.uint64:
    """Return the 64-bit key of the kernel noise stream for a run ``seed``."""
    state = np.random.SeedSequence([int(seed), 0x5EED]).generate_state(2, dtype=np.uint64)
    return np.uint64(state[0] ^ (state[1] << np.uint64(1)))


@njit(cache=True, inline="always")
def mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit avalanche hash."""
    z = (z ^ (z >> uint64(30))) * _M1
    z = (z ^ (z >> uint64(27))) * _M2
    return z ^ (z >> uint64(31))


@njit(cache=True, inline="always")
def stream_base(key, step, index):
    """Hash of (key, step, particle index); combine with a small ``component`` counter."""
    return particle_base(step_hash(key, step), index)


@njit(cache=True, inline="always")
def step_hash(key, step):
    """The step part of :func:`stream_base` (loops over particles compute it once)."""
    return mix64(key ^ (uint64(step) * _GOLDEN))


@njit(cache=True, inline="always")
def particle_base(h, index):
    """:func:`stream_base` from its step part ``h`` (:func:`step_hash`)."""
    return mix64(h + uint64(index) * _M2 + _GOLDEN)


@njit(cache=True, inline="always")
def uniform(base, component):
    """Uniform float64 in the open interval (0, 1) from a stream base and a component."""
    z = mix64(base + uint64(component) * _GOLDEN)
    return (float(z >> uint64(11)) + 0.5) * _TWO_M53


@njit(cache=True, inline="always")
def normal_pair(base, component):
    """Two independent standard normals (Box–Muller) from components ``component`` and +1."""
    u1 = uniform(base, component)
    u2 = uniform(base, component + 1)
    r = math.sqrt(-2.0 * math.log(u1))
    a = 2.0 * math.pi * u2
    return r * math.cos(a), r * math.sin(a)


# ----------------------------------------------------------------- ziggurat normals
# Marsaglia & Tsang's ziggurat (256 layers, 52-bit mantissas, the layout numpy uses),
# driven by the counter hash: one hash per normal in 98.8 % of draws, no log/sin/cos.
# Rejections and the tail draw further hashes at components derived from the first,
# so every number stays a pure function of (key, step, particle, component).
_ZIG_R = 3.6541528853610088  # start of the tail
_ZIG_V = 4.92867323399e-03  # area of every layer


def _ziggurat_tables():
    """Layer edges x_i (as w_i = x_i / 2^52), acceptance thresholds k_i and f(x_i)."""
    n, m1 = 256, 2.0 ** 52
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731
    ki = np.zeros(n, dtype=np.uint64)
    wi = np.zeros(n)
    fi = np.zeros(n)
    dn = tn = _ZIG_R
    q = _ZIG_V / f(dn)
    ki[0] = np.uint64((dn / q) * m1)
    ki[1] = 0
    wi[0] = q / m1
    wi[n - 1] = dn / m1
    fi[0] = 1.0
    fi[n - 1] = f(dn)
    for i in range(n - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(_ZIG_V / dn + f(dn)))
        ki[i + 1] = np.uint64((dn / tn) * m1)
        tn = dn
        fi[i] = f(dn)
        wi[i] = dn / m1
    return ki, wi, fi


_ZIG_K, _ZIG_W, _ZIG_F = _ziggurat_tables()
_MASK52 = uint64(0x000FFFFFFFFFFFFF)


@njit(cache=True)
def _normal_slow(base, component, z):
    """The rare branch of :func:`normal` (tail or wedge); ``z`` is the rejected hash."""
    attempt = uint64(0)
    while True:
        idx = z & uint64(0xFF)
        negative = (z >> uint64(8)) & uint64(1)
        mant = (z >> uint64(9)) & _MASK52
        x = float(mant) * _ZIG_W[idx]
        if mant < _ZIG_K[idx]:
            return -x if negative else x
        # fresh hashes for the extra uniforms: components far above the ones in use
        extra = base + (uint64(component) * uint64(4096) + uint64(1024) + attempt * uint64(3)) * _GOLDEN
        attempt += uint64(1)
        if idx == 0:  # tail beyond r: Marsaglia's exponential rejection
            while True:
                u1 = (float(mix64(extra) >> uint64(11)) + 0.5) * _TWO_M53
                u2 = (float(mix64(extra + _M1) >> uint64(11)) + 0.5) * _TWO_M53
                xx = -math.log(u1) / _ZIG_R
                yy = -math.log(u2)
                if yy + yy > xx * xx:
                    return -(_ZIG_R + xx) if negative else _ZIG_R + xx
                extra = base + (uint64(component) * uint64(4096) + uint64(1024)
                                + attempt * uint64(3)) * _GOLDEN
                attempt += uint64(1)
        u = (float(mix64(extra) >> uint64(11)) + 0.5) * _TWO_M53
        if _ZIG_F[idx] + u * (_ZIG_F[idx - 1] - _ZIG_F[idx]) < math.exp(-0.5 * x * x):
            return -x if negative else x
        z = mix64(extra + _M2)


@njit(cache=True, inline="always")
def normal(base, component):
    """A standard normal from a stream base and a component (exact ziggurat, ~3 ns).

    Components used by :func:`normal` must stay below 2**40 and must not be reused for
    :func:`uniform` draws of the same base.
    """
    z = mix64(base + uint64(component) * _GOLDEN)
    idx = z & uint64(0xFF)
    mant = (z >> uint64(9)) & _MASK52
    if mant < _ZIG_K[idx]:
        x = float(mant) * _ZIG_W[idx]
        return -x if (z >> uint64(8)) & uint64(1) else x
    return _normal_slow(base, component, z)


# ------------------------------------------------------------------ fast sin / cos
# fdlibm's kernel polynomials on [-π/4, π/4] after a two-part Cody–Waite reduction:
# within 1 ulp of libm for |θ| ≤ 8π, at a third of the cost of math.cos + math.sin.
_PIO2_1 = 1.57079632673412561417e+00
_PIO2_1T = 6.07710050650619224932e-11
_S1, _S2, _S3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_S4, _S5, _S6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_C1, _C2, _C3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_C4, _C5, _C6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11


@njit(cache=True, inline="always")
def sincos(theta):
    """(sin θ, cos θ) for |θ| ≤ 8π (angles kept wrapped), within 1 ulp of libm."""
    k = math.floor(theta * 0.6366197723675814 + 0.5)
    r = (theta - k * _PIO2_1) - k * _PIO2_1T
    z = r * r
    s = r + r * z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
    hz = 0.5 * z
    w = 1.0 - hz
    c = w + (((1.0 - w) - hz) + z * z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6))))))
    q = int(k) & 3  # quadrant: branch-free selects (random angles defeat prediction)
    swap = q & 1
    sign_s = -1.0 if q & 2 else 1.0
    sign_c = -1.0 if (q + 1) & 2 else 1.0
    return sign_s * (c if swap else s), sign_c * (s if swap else c)
