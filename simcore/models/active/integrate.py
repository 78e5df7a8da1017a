"""The active-particle time step: per-particle integration and the step loop
(:func:`run_steps_for`), with the Verlet-list status fields."""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange, uint64

from simcore import neighbors, rng
from simcore.models.active.forces import (_compute_forces_parallel, _compute_forces_serial,
                                          _half_pairs, _verlet_forces_parallel,
                                          _verlet_forces_serial, _wca_pair_forces_serial)
from simcore.models.active.params import POTENTIALS


@njit(cache=True, inline="always")
def _step_particle(x0, x1, f0, f1, p0, p1, th, identity, key, step, L, dt, v0, mu, s_t, s_r,
                   decay, s_g, abp, uniform_noise, max_jump):
    """One Euler–Maruyama step of one particle; exact updates for θ (ABP) or g (AOUP).

    Scalars in, scalars out: Numba's inlining of a function that takes arrays adds
    reference counting per call, which doubled the cost of this loop. (p0, p1) is the AOUP
    propulsion g, or for ABP the carried orientation n = (cos θ, sin θ), rotated by each
    angle increment instead of recomputed (a sine and a cosine of a small angle are short
    series; it is reset from θ at every renumbering, so rounding cannot accumulate).
    ``s_t = √(2 D_t dt)``, ``s_r = √(2 D_r dt)``, ``decay = e^{−γ dt}``,
    ``s_g = √(1 − decay²)``. Returns the new (x0, x1), the image shifts, θ, (p0, p1) and
    whether a force moved the particle farther than ``max_jump`` (or to a non-finite place).
    """
    base = rng.stream_base(key, step, identity)  # noise follows the particle, not its slot
    if uniform_noise:  # variance-matched uniform: √3·(2u − 1) has unit variance
        w0 = 1.7320508075688772 * (2.0 * rng.uniform(base, 0) - 1.0)
        w1 = 1.7320508075688772 * (2.0 * rng.uniform(base, 1) - 1.0)
    else:
        w0, w1 = rng.normal(base, 0), rng.normal(base, 1)
    bad = not (abs(mu * f0 * dt) <= max_jump and abs(mu * f1 * dt) <= max_jump)
    y0, sh0 = _wrap(x0 + (v0 * p0 + mu * f0) * dt + s_t * w0, L)
    y1, sh1 = _wrap(x1 + (v0 * p1 + mu * f1) * dt + s_t * w1, L)
    if abp:
        delta = s_r * rng.normal(base, 2)
        th = th + delta
        if th < -math.pi or th >= math.pi:  # keep θ in [−π, π)
            th -= 2.0 * math.pi * math.floor((th + math.pi) / (2.0 * math.pi))
        if abs(delta) < 0.1:  # series exact to double precision (next term < 3e-17)
            z = delta * delta
            c = 1.0 - z * (0.5 - z * (1.0 / 24.0 - z * (1.0 / 720.0 - z * (1.0 / 40320.0))))
            sn = delta * (1.0 - z * (1.0 / 6.0 - z * (1.0 / 120.0 - z * (1.0 / 5040.0
                                                                        - z / 362880.0))))
        else:
            sn, c = rng.sincos(delta)
        q0, q1 = c * p0 - sn * p1, sn * p0 + c * p1
    else:
        q0 = decay * p0 + s_g * rng.normal(base, 2)
        q1 = decay * p1 + s_g * rng.normal(base, 3)
    return y0, y1, sh0, sh1, th, q0, q1, bad


@njit(cache=True, inline="always")
def _wrap(x, L):
    """x folded into [0, L) and the number of box lengths removed."""
    if 0.0 <= x < L:
        return x, 0
    shift = math.floor(x / L)
    x -= shift * L
    if x >= L:  # round-off can land exactly on L
        x -= L
        shift += 1.0
    return x, int(shift)


@njit(cache=True, inline="always")
def _displacement2(y0, y1, r0, r1, L):
    """Squared minimum-image distance of (y0, y1) from (r0, r1), both in [0, L)."""
    ax = abs(y0 - r0)
    ay = abs(y1 - r1)
    ax = min(ax, L - ax)
    ay = min(ay, L - ay)
    return ax * ax + ay * ay


@njit(cache=True, parallel=True, error_model="numpy")
def _integrate_parallel(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r, gamma, abp,
                        uniform_noise, key, step, max_jump, unstable, ids, ref, track):
    """One step of every particle; returns the largest squared displacement from ``ref``
    (the Verlet lists' build positions) if ``track``, else 0."""
    moved2 = 0.0
    s_t, s_r = math.sqrt(2.0 * D_t * dt), math.sqrt(2.0 * D_r * dt)
    decay = math.exp(-gamma * dt)
    s_g = math.sqrt(1.0 - decay * decay)
    for i in prange(pos.shape[0]):
        th = theta[i] if abp else 0.0
        y0, y1, sh0, sh1, th, q0, q1, bad = _step_particle(
            pos[i, 0], pos[i, 1], force[i, 0], force[i, 1], g[i, 0], g[i, 1], th, ids[i], key,
            step, L, dt, v0, mu, s_t, s_r, decay, s_g, abp, uniform_noise, max_jump)
        pos[i, 0], pos[i, 1] = y0, y1
        image[i, 0] += sh0
        image[i, 1] += sh1
        g[i, 0], g[i, 1] = q0, q1
        if abp:
            theta[i] = th
        if bad:
            unstable[0] = 1
        if track:  # the displacement check of the next step, while the particle is at hand
            moved2 = max(moved2, _displacement2(y0, y1, ref[i, 0], ref[i, 1], L))
    return moved2


@njit(cache=True, error_model="numpy")
def _integrate_serial(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r, gamma, abp,
                      uniform_noise, key, step, max_jump, unstable, ids, ref, track):
    """Serial twin of :func:`_integrate_parallel` (same arithmetic, same bits)."""
    moved2 = 0.0
    s_t, s_r = math.sqrt(2.0 * D_t * dt), math.sqrt(2.0 * D_r * dt)
    decay = math.exp(-gamma * dt)
    s_g = math.sqrt(1.0 - decay * decay)
    for i in range(pos.shape[0]):
        th = theta[i] if abp else 0.0
        y0, y1, sh0, sh1, th, q0, q1, bad = _step_particle(
            pos[i, 0], pos[i, 1], force[i, 0], force[i, 1], g[i, 0], g[i, 1], th, ids[i], key,
            step, L, dt, v0, mu, s_t, s_r, decay, s_g, abp, uniform_noise, max_jump)
        pos[i, 0], pos[i, 1] = y0, y1
        image[i, 0] += sh0
        image[i, 1] += sh1
        g[i, 0], g[i, 1] = q0, q1
        if abp:
            theta[i] = th
        if bad:
            unstable[0] = 1
        if track:  # the displacement check of the next step, while the particle is at hand
            moved2 = max(moved2, _displacement2(y0, y1, ref[i, 0], ref[i, 1], L))
    return moved2


INTEGRATE_BLOCK = 256  # particles per block of :func:`_integrate_abp_serial`


@njit(cache=True, inline="always")
def _zig_fast(z):
    """The common branch of :func:`rng.normal` from its hash ``z``: (value, accepted)."""
    idx = z & uint64(0xFF)
    mant = (z >> uint64(9)) & rng._MASK52
    x = float(mant) * rng._ZIG_W[idx]
    return (-x if (z >> uint64(8)) & uint64(1) else x), mant < rng._ZIG_K[idx]


# called once per block of particles, so not worth Numba's inlining (a copy of its IR per
# call site): the ABP kernels compile ~15 % faster, with the same bits (benchmarks/
# RESULTS.md, session 39)
@njit(cache=True, error_model="numpy")
def _abp_noise(i0, nb, key, step, h, ids, uniform_noise, zb, W0, W1, W2):
    """The three noise components of particles ``i0 .. i0 + nb`` of an ABP step into
    ``W0``, ``W1``, ``W2`` (indexed from 0), exactly the values of :func:`_step_particle`:

    1. the SplitMix64 hashes (rng.particle_base, then components 0-2) into ``zb`` (3, >= nb),
       vectorised;
    2. the ziggurat's common branch, a branch-free pass per component; the particles
       with a rejected draw (3.6 % for three normals) call :func:`rng.normal` again for
       all three. ``h`` is :func:`rng.step_hash` of the step.

    The noise depends on (key, step, particle identity) only, not on the state: threaded
    steps draw it while the forces are summed (:func:`_wca_forces_and_abp_noise`)."""
    Z0, Z1, Z2 = zb[0], zb[1], zb[2]
    for q in range(nb):
        base = rng.particle_base(h, ids[uint64(i0 + q)])
        Z0[q] = rng.mix64(base)
        Z1[q] = rng.mix64(base + rng._GOLDEN)
        Z2[q] = rng.mix64(base + uint64(2) * rng._GOLDEN)
    # 2. one branch-free pass per component (the draws a ziggurat layer rejects are
    # counted), then the rare particles with a rejected draw again from scratch
    rejected = _zig_pass(Z2, W2, nb)
    if uniform_noise:  # rng.uniform(base, 0 | 1), variance-matched
        for q in range(nb):
            W0[q] = 1.7320508075688772 * (2.0 * ((float(Z0[q] >> uint64(11)) + 0.5)
                                                 * rng._TWO_M53) - 1.0)
            W1[q] = 1.7320508075688772 * (2.0 * ((float(Z1[q] >> uint64(11)) + 0.5)
                                                 * rng._TWO_M53) - 1.0)
    else:
        rejected += _zig_pass(Z0, W0, nb) + _zig_pass(Z1, W1, nb)
    for q in range(nb if rejected else 0):
        if (_zig_rejected(Z2[q]) or not uniform_noise
                and (_zig_rejected(Z0[q]) or _zig_rejected(Z1[q]))):
            base = rng.stream_base(key, step, ids[i0 + q])
            if not uniform_noise:
                W0[q], W1[q] = rng.normal(base, 0), rng.normal(base, 1)
            W2[q] = rng.normal(base, 2)


@njit(cache=True, inline="always")
def _zig_rejected(z):
    """Whether :func:`rng.normal` leaves its common branch for the hash ``z``."""
    return (z >> uint64(9)) & rng._MASK52 >= rng._ZIG_K[z & uint64(0xFF)]


@njit(cache=True, inline="always")
def _zig_pass(Z, W, nb):
    """``W[q]`` = the common branch of :func:`rng.normal` for the hash ``Z[q]``, q < nb
    (branch-free: 2x faster than a loop that calls rng.normal on a rejection); returns
    how many of them the ziggurat rejects (their ``W`` must be drawn again)."""
    rejected = 0
    for q in range(nb):
        w, ok = _zig_fast(Z[q])
        W[q] = w
        rejected += not ok
    return rejected


@njit(cache=True, error_model="numpy")
def _abp_update(i0, nb, pos, image, theta, g, force, L, dt, v0, mu, s_t, s_r, max_jump, ref,
                track, W0, W1, W2, buf):
    """The Euler–Maruyama update of particles ``i0 .. i0 + nb`` from their noise ``W0``,
    ``W1``, ``W2`` (:func:`_abp_noise`), in passes over the buffers ``buf`` (8, >= nb) so that
    LLVM vectorises them. Returns (particles whose drift jumps too far, the largest
    displacement from ``ref`` if ``track``):

    1. copy of positions, drift and orientation into contiguous buffers;
    2. the update with the short sin/cos series (vectorised); the rare cases (box or angle
       wrap, an angle step >= 0.1, NaN) are flagged;
    3. the flagged particles get :func:`_wrap`, the angle wrap and :func:`rng.sincos`
       exactly as :func:`_step_particle` (scalar);
    4. copy-out, and the largest displacement from ``ref`` if ``track``.
    """
    X0, X1, D0, D1, P0, P1 = buf[0], buf[1], buf[2], buf[3], buf[4], buf[5]
    TH, FL = buf[6], buf[7]
    nbad = 0
    moved2 = 0.0
    two_pi = 2.0 * math.pi
    for q in range(nb):  # 1. copy-in
        i = uint64(i0 + q)
        f0 = force[i, 0]
        f1 = force[i, 1]
        p0 = g[i, 0]
        p1 = g[i, 1]
        X0[q] = pos[i, 0]
        X1[q] = pos[i, 1]
        D0[q] = v0 * p0 + mu * f0
        D1[q] = v0 * p1 + mu * f1
        P0[q] = p0
        P1[q] = p1
        TH[q] = theta[i]
        nbad += not (abs(mu * f0 * dt) <= max_jump and abs(mu * f1 * dt) <= max_jump)
    nrare = 0
    for q in range(nb):  # 2. the update (as _step_particle's common case)
        y0 = X0[q] + D0[q] * dt + s_t * W0[q]
        y1 = X1[q] + D1[q] * dt + s_t * W1[q]
        delta = s_r * W2[q]
        th = TH[q] + delta
        z = delta * delta
        c = 1.0 - z * (0.5 - z * (1.0 / 24.0 - z * (1.0 / 720.0 - z * (1.0 / 40320.0))))
        sn = delta * (1.0 - z * (1.0 / 6.0 - z * (1.0 / 120.0 - z * (1.0 / 5040.0
                                                                    - z / 362880.0))))
        p0 = P0[q]
        p1 = P1[q]
        usual = ((0.0 <= y0) & (y0 < L) & (0.0 <= y1) & (y1 < L) & (th >= -math.pi)
                 & (th < math.pi) & (abs(delta) < 0.1))  # False for NaN, as needed
        rare = usual ^ True
        X0[q] = y0
        X1[q] = y1
        TH[q] = th
        P0[q] = c * p0 - sn * p1
        P1[q] = sn * p0 + c * p1
        FL[q] = 1.0 if rare else 0.0
        nrare += rare
    for q in range(nb if nrare else 0):  # 3. the rare cases
        if FL[q] != 0.0:
            i = i0 + q
            y0, sh0 = _wrap(X0[q], L)
            y1, sh1 = _wrap(X1[q], L)
            X0[q] = y0
            X1[q] = y1
            image[i, 0] += sh0
            image[i, 1] += sh1
            th = TH[q]
            if th < -math.pi or th >= math.pi:
                TH[q] = th - two_pi * math.floor((th + math.pi) / two_pi)
            delta = s_r * W2[q]
            if not abs(delta) < 0.1:
                sn, c = rng.sincos(delta)
                p0, p1 = g[i, 0], g[i, 1]
                P0[q], P1[q] = c * p0 - sn * p1, sn * p0 + c * p1
    for q in range(nb):  # 4. copy-out
        i = uint64(i0 + q)
        y0 = X0[q]
        y1 = X1[q]
        pos[i, 0] = y0
        pos[i, 1] = y1
        theta[i] = TH[q]
        g[i, 0] = P0[q]
        g[i, 1] = P1[q]
        if track:
            moved2 = max(moved2, _displacement2(y0, y1, ref[i, 0], ref[i, 1], L))
    return nbad, moved2


@njit(cache=True, error_model="numpy")
def _abp_block(i0, nb, pos, image, theta, g, force, L, dt, v0, mu, s_t, s_r, uniform_noise,
               key, step, h, max_jump, ids, ref, track, zb, buf):
    """One block of :func:`_integrate_abp_serial`: particles ``i0 .. i0 + nb``, their noise
    (:func:`_abp_noise`) into rows 8-10 of ``buf`` (11, >= nb), then the update
    (:func:`_abp_update`). Returns what :func:`_abp_update` returns."""
    _abp_noise(i0, nb, key, step, h, ids, uniform_noise, zb, buf[8], buf[9], buf[10])
    return _abp_update(i0, nb, pos, image, theta, g, force, L, dt, v0, mu, s_t, s_r, max_jump,
                       ref, track, buf[8], buf[9], buf[10], buf)


@njit(cache=True, error_model="numpy")
def _integrate_abp_serial(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r, uniform_noise,
                          key, step, max_jump, unstable, ids, ref, track):
    """:func:`_integrate_serial` for ABP, the same bits, in passes over blocks of particles
    (:func:`_abp_block`) so that LLVM vectorises the hashing and the update."""
    s_t, s_r = math.sqrt(2.0 * D_t * dt), math.sqrt(2.0 * D_r * dt)
    h = rng.step_hash(key, step)
    n = pos.shape[0]
    zb = np.empty((3, INTEGRATE_BLOCK), dtype=np.uint64)
    buf = np.empty((11, INTEGRATE_BLOCK))
    nbad = 0
    moved2 = 0.0
    for i0 in range(0, n, INTEGRATE_BLOCK):
        bad, m2 = _abp_block(i0, min(INTEGRATE_BLOCK, n - i0), pos, image, theta, g, force, L,
                             dt, v0, mu, s_t, s_r, uniform_noise, key, step, h, max_jump, ids,
                             ref, track, zb, buf)
        nbad += bad
        moved2 = max(moved2, m2)
    if nbad:
        unstable[0] = 1
    return moved2


@njit(cache=True)
def _blocks_outcome(bad, moved, unstable):
    """The threaded integrations' per-block results combined in a plain loop (array
    reductions in a ``parallel=True`` function become parfors of their own, seconds of
    compilation each): flags ``unstable`` if a block was, returns the largest ``moved``
    (NaN if any is, as ``np.max``), 0 without blocks."""
    largest = 0.0
    for b in range(bad.shape[0]):
        if bad[b]:
            unstable[0] = 1
        if b == 0 or moved[b] > largest or moved[b] != moved[b]:
            largest = moved[b]
    return largest


@njit(cache=True, parallel=True, error_model="numpy")
def _integrate_abp_parallel(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r,
                            uniform_noise, key, step, max_jump, unstable, ids, ref, track):
    """Threaded twin of :func:`_integrate_abp_serial` (blocks across threads; every
    particle's arithmetic is the same, so are the bits)."""
    s_t, s_r = math.sqrt(2.0 * D_t * dt), math.sqrt(2.0 * D_r * dt)
    h = rng.step_hash(key, step)
    n = pos.shape[0]
    n_blocks = (n + INTEGRATE_BLOCK - 1) // INTEGRATE_BLOCK
    bad = np.empty(n_blocks, dtype=np.int64)  # every block writes its own entry
    moved = np.empty(n_blocks)
    for b in prange(n_blocks):
        zb = np.empty((3, INTEGRATE_BLOCK), dtype=np.uint64)
        buf = np.empty((11, INTEGRATE_BLOCK))
        i0 = b * INTEGRATE_BLOCK
        bad[b], moved[b] = _abp_block(i0, min(INTEGRATE_BLOCK, n - i0), pos, image, theta, g,
                                      force, L, dt, v0, mu, s_t, s_r, uniform_noise, key, step,
                                      h, max_jump, ids, ref, track, zb, buf)
    return _blocks_outcome(bad, moved, unstable)


# Listed WCA pairs that cost as much as one particle's noise (three Gaussians; two uniforms
# and a Gaussian), measured on one core of an AMD EPYC (Zen 1): 11 ns per listed pair,
# 20.6 / 17.6 ns per particle. Only the threads' balance depends on them, not the bits.
PAIRS_PER_NOISE_GAUSSIAN = 1.9
PAIRS_PER_NOISE_UNIFORM = 1.6


@njit(cache=True, error_model="numpy")
def _noise_range(start, stop, key, step, ids, uniform_noise, noise):
    """:func:`_abp_noise` for particles ``start .. stop`` into ``noise`` (3, N), in blocks."""
    h = rng.step_hash(key, step)
    zb = np.empty((3, INTEGRATE_BLOCK), dtype=np.uint64)
    for i0 in range(start, stop, INTEGRATE_BLOCK):
        _abp_noise(i0, min(INTEGRATE_BLOCK, stop - i0), key, step, h, ids, uniform_noise, zb,
                   noise[0, i0:], noise[1, i0:], noise[2, i0:])


@njit(cache=True, parallel=True, error_model="numpy")
def _wca_forces_and_abp_noise(pos, L, pi, pj, m, sig2, eps24, rc2, pair_buf, force, key, step,
                              ids, uniform_noise, noise):
    """Task-parallel first half of a threaded ABP-WCA step: one thread sums the WCA forces
    (:func:`_wca_pair_forces_serial`, the serial bits) and draws the noise of the first
    particles, the other draws the rest of the step's noise into ``noise`` (3, N)
    (:func:`_abp_noise`; it does not depend on the state). The split balances the
    measured costs of a listed pair and of a particle's noise."""
    n = pos.shape[0]
    per_noise = PAIRS_PER_NOISE_UNIFORM if uniform_noise else PAIRS_PER_NOISE_GAUSSIAN
    split = min(max(int(0.5 * (n - m / per_noise)), 0), n)
    for task in prange(2):  # a static schedule gives each thread one task
        if task == 0:
            _wca_pair_forces_serial(pos, L, pi, pj, m, sig2, eps24, rc2, pair_buf, force)
        # one call site: one compiled specialisation of the noise
        _noise_range(split if task else 0, n if task else split, key, step, ids,
                     uniform_noise, noise)


@njit(cache=True, parallel=True, error_model="numpy")
def _update_abp_parallel(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r, max_jump,
                         unstable, ref, track, noise):
    """Second half of a threaded ABP-WCA step: :func:`_abp_update` from the drawn ``noise``,
    blocks across threads (every particle's arithmetic is the serial one, so are the bits).
    Returns the largest displacement from ``ref`` if ``track``."""
    s_t, s_r = math.sqrt(2.0 * D_t * dt), math.sqrt(2.0 * D_r * dt)
    n = pos.shape[0]
    n_blocks = (n + INTEGRATE_BLOCK - 1) // INTEGRATE_BLOCK
    bad = np.empty(n_blocks, dtype=np.int64)  # every block writes its own entry
    moved = np.empty(n_blocks)
    for b in prange(n_blocks):
        buf = np.empty((8, INTEGRATE_BLOCK))
        i0 = b * INTEGRATE_BLOCK
        bad[b], moved[b] = _abp_update(i0, min(INTEGRATE_BLOCK, n - i0), pos, image, theta, g,
                                       force, L, dt, v0, mu, s_t, s_r, max_jump, ref, track,
                                       noise[0, i0:], noise[1, i0:], noise[2, i0:], buf)
    return _blocks_outcome(bad, moved, unstable)


# fields of the Verlet-list status array work["status"] (compile-time constants in Numba)
ST_NEEDED_CAPACITY = 0  # neighbours per particle the lists needed when they overflowed
ST_LISTS_VALID = 1  # 1 while the lists match the particle slots, 0 forces a rebuild
ST_PAIRS = 2  # pairs in the flat half list of the serial WCA kernel; -1: to be made
ST_NEEDED_PAIRS = 3  # pairs the flat list needed when its arrays were too short
N_STATUS = 4


# how a step loop sums the forces (a constant of it, see run_steps_for)
FORCES_WCA_PAIRS = 0  # WCA over the flat half pair list made from the Verlet lists
FORCES_VERLET = 1  # another potential over the Verlet lists
FORCES_GRID = 2  # no Verlet lists (no potential, or a box too small for them): the grid


def force_path(potential_code: int, nb_rows: int, n: int) -> int:
    """The force path (``FORCES_*``) of a run whose potential has the code
    ``potential_code`` (``params.POTENTIALS``) and whose Verlet-list array ``nb`` has
    ``nb_rows`` rows for ``n`` particles (fewer: the lists are off)."""
    if nb_rows != n or potential_code == POTENTIALS["none"]:
        return FORCES_GRID
    return FORCES_WCA_PAIRS if potential_code == POTENTIALS["wca"] else FORCES_VERLET


@functools.cache
def run_steps_for(parallel: bool, abp: bool, path: int):
    """The step loop for threaded (``parallel``) or serial runs of ABP (``abp``) or AOUP
    particles whose forces take the path ``path`` (:func:`force_path`), compiled on its
    first call (then loaded from Numba's cache).

    One compiled loop per combination: the three are constants of it (closure cells, part
    of Numba's cache key), so the branches on them are pruned before typing and a run
    compiles only the kernels its path calls (ABP's defaults: ~20 s on a cold cache,
    against ~70 s for a loop typed with every path; a threaded ABP-WCA run's loop ~60 s
    against ~100 s with the force paths left to run time)."""
    verlet = path != FORCES_GRID
    wca = path == FORCES_WCA_PAIRS
    split = parallel and abp and wca  # forces on one thread, the noise on the other

    @njit(cache=True, nogil=True)  # nogil: other Python threads run meanwhile
    def _run_steps(pos, image, theta, g, force, div, L, side, ncell, reach, cell_of, bucket_of,
                   bucket_start, order, xs, ys, keys, pot, sig2, eps24, rc2, k, beta, contact,
                   kappa, dt, v0, mu, D_t, D_r, gamma, uniform_noise, key, step0, n_steps,
                   max_jump, unstable, grid_nc, nb, nb_count, ref, r_list, status, ids, pi, pj,
                   pair_buf, noise):
        """Advance up to ``n_steps``; returns the number of steps done (fewer when the
        Verlet lists overflowed: ``status[ST_NEEDED_CAPACITY]`` then holds the capacity
        they need; or when the flat pair arrays ``pi``, ``pj`` were too short:
        ``status[ST_NEEDED_PAIRS]``).

        WCA runs, serial or threaded, sum the forces over a flat half pair list made from
        the Verlet lists at each rebuild (:func:`_wca_pair_forces_serial`, same bits as the
        list kernels); threaded runs thread the list builds and the integration."""
        use_verlet = nb.shape[0] == pos.shape[0] and pot != 0  # == verlet (force_path)
        half_skin2 = 0.25 * (r_list - math.sqrt(rc2)) ** 2
        moved2 = -1.0  # largest displacement since the lists were built (the integration's)
        for s in range(n_steps):
            if verlet:
                if moved2 < 0.0:  # first step of this call
                    if parallel:
                        moved2 = neighbors.max_displacement2_parallel(pos, ref, L)
                    else:
                        moved2 = neighbors.max_displacement2(pos, ref, L)
                if status[ST_LISTS_VALID] == 0 or moved2 > half_skin2:
                    if parallel:
                        largest = neighbors.build_verlet2d_parallel(
                            pos, L, grid_nc, L / grid_nc, bucket_start, order, xs, ys, r_list, nb,
                            nb_count, ref)
                    else:
                        largest = neighbors.build_verlet2d(pos, L, grid_nc, L / grid_nc,
                                                           bucket_start, order, xs, ys, r_list, nb,
                                                           nb_count, ref)
                    if largest > nb.shape[1]:
                        status[ST_NEEDED_CAPACITY] = largest
                        status[ST_LISTS_VALID] = 0
                        return s
                    status[ST_LISTS_VALID] = 1
                    status[ST_PAIRS] = -1
                if wca:  # threaded runs too: the flat kernel on one thread beats the
                    # full-list kernel on two (benchmarks/RESULTS.md)
                    if status[ST_PAIRS] < 0:
                        m = _half_pairs(nb, nb_count, pi, pj)
                        if m < 0:
                            status[ST_NEEDED_PAIRS] = -m
                            return s
                        status[ST_PAIRS] = m
                    if split:
                        _wca_forces_and_abp_noise(pos, L, pi, pj, status[ST_PAIRS], sig2, eps24,
                                                  rc2, pair_buf, force, key, step0 + s, ids,
                                                  uniform_noise, noise)
                    else:
                        _wca_pair_forces_serial(pos, L, pi, pj, status[ST_PAIRS], sig2, eps24,
                                                rc2, pair_buf, force)
                elif parallel:
                    _verlet_forces_parallel(pos, L, nb, nb_count, pot, sig2, eps24, rc2, k, beta,
                                            contact, force)
                else:
                    _verlet_forces_serial(pos, L, nb, nb_count, pot, sig2, eps24, rc2, k, beta,
                                          contact, force)
                if kappa > 0.0:
                    c = 0.5 * L
                    for i in range(pos.shape[0]):
                        force[i, 0] -= kappa * (pos[i, 0] - c)
                        force[i, 1] -= kappa * (pos[i, 1] - c)
            else:
                # bool(False), not False: a literal would compile a second specialisation
                # of the force sum (and of its callees) beside the one forces() uses
                if parallel:
                    _compute_forces_parallel(pos, L, side, ncell, reach, cell_of, bucket_of,
                                             bucket_start, order, xs, ys, keys, pot, sig2,
                                             eps24, rc2, k, beta, contact, kappa, force, div,
                                             bool(False), grid_nc)
                else:
                    _compute_forces_serial(pos, L, side, ncell, reach, cell_of, bucket_of,
                                           bucket_start, order, xs, ys, keys, pot, sig2, eps24,
                                           rc2, k, beta, contact, kappa, force, div,
                                           bool(False), grid_nc)
            if split:  # the noise was drawn with the forces
                moved2 = _update_abp_parallel(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r,
                                              max_jump, unstable, ref, use_verlet, noise)
            elif parallel and abp:
                moved2 = _integrate_abp_parallel(pos, image, theta, g, force, L, dt, v0, mu, D_t,
                                                 D_r, uniform_noise, key, step0 + s, max_jump,
                                                 unstable, ids, ref, use_verlet)
            elif parallel:
                moved2 = _integrate_parallel(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r,
                                             gamma, abp, uniform_noise, key, step0 + s, max_jump,
                                             unstable, ids, ref, use_verlet)
            elif abp:
                moved2 = _integrate_abp_serial(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r,
                                               uniform_noise, key, step0 + s, max_jump, unstable,
                                               ids, ref, use_verlet)
            else:
                moved2 = _integrate_serial(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r,
                                           gamma, abp, uniform_noise, key, step0 + s, max_jump,
                                           unstable, ids, ref, use_verlet)
            if unstable[0]:
                return s + 1
        return n_steps

    return _run_steps
