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
    h = mix64(key ^ (uint64(step) * _GOLDEN))
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
