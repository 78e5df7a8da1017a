"""Pair forces of the active-particle kernel: cell-list and Verlet-list loops (serial and
threaded twins)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from simcore import neighbors


@njit(cache=True, inline="always")
def _pair_force(r2, pot, sig2, eps24, rc2, k, beta, contact):
    """Magnitude φ(r)/r of the pair force (F_ij = φ/r · r_ij) and φ'(r) for r² = r2 < rc²."""
    if pot == 1:
        s6 = (sig2 / r2) ** 3
        return eps24 * (2.0 * s6 * s6 - s6) / r2
    r = math.sqrt(r2)
    u = beta * (contact - r)
    softplus = max(u, 0.0) + math.log1p(math.exp(-abs(u)))
    return k * softplus / beta / r


@njit(cache=True, inline="always")
def _pair_divergence(r2, pot, sig2, eps24, k, beta, contact):
    """∇_i·(φ(r) r̂) = φ'(r) + φ(r)/r in 2D, for the exact score-free EPR."""
    r = math.sqrt(r2)
    if pot == 1:
        s6 = (sig2 / r2) ** 3
        phi = eps24 * (2.0 * s6 * s6 - s6) / r
        dphi = -eps24 * (26.0 * s6 * s6 - 7.0 * s6) / r2
        return dphi + phi / r
    u = beta * (contact - r)
    softplus = max(u, 0.0) + math.log1p(math.exp(-abs(u)))
    sigmoid = 1.0 / (1.0 + math.exp(-u))
    return -k * sigmoid + k * softplus / beta / r


@njit(cache=True)
def _gather(pos, order, xs, ys):
    for t in range(order.shape[0]):
        j = order[t]
        xs[t] = pos[j, 0]
        ys[t] = pos[j, 1]


@njit(cache=True, inline="always")
def _force_on(i, pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot, sig2, eps24,
              rc2, k, beta, contact, want_div):
    """Pair force on particle i (and optionally its divergence), cell order, no branches
    on the pair test."""
    mask = bucket_start.shape[0] - 2
    px, py = pos[i, 0], pos[i, 1]
    fx = fy = div = 0.0
    one_cell = ncell[0] == 1
    inv_L = 1.0 / L
    for ox in range(-reach[0], reach[0] + 1):
        cx, sx = neighbors.neighbor_cell(cell_of[i, 0], ox, ncell[0], L)
        for oy in range(-reach[1], reach[1] + 1):
            cy, sy = neighbors.neighbor_cell(cell_of[i, 1], oy, ncell[1], L)
            b = neighbors.cell_hash(cx, cy, 0, mask)
            tkey = (cx << 32) | (cy & 0xFFFFFFFF)
            for t in range(bucket_start[b], bucket_start[b + 1]):
                dx = px - (xs[t] + sx)
                dy = py - (ys[t] + sy)
                if one_cell:
                    dx -= L * np.floor(dx * inv_L + 0.5)
                    dy -= L * np.floor(dy * inv_L + 0.5)
                r2 = dx * dx + dy * dy
                ok = (keys[t] == tkey) & (r2 < rc2) & (r2 > 0.0)
                f = _pair_force(r2 if ok else rc2 * 0.5, pot, sig2, eps24, rc2, k, beta, contact)
                f = f if ok else 0.0
                fx += f * dx
                fy += f * dy
                if want_div:
                    dv = _pair_divergence(r2 if ok else rc2 * 0.5, pot, sig2, eps24, k, beta,
                                          contact)
                    div += dv if ok else 0.0
    return fx, fy, div


@njit(cache=True)
def _keys(cell_of, order, keys):
    for t in range(order.shape[0]):
        j = order[t]
        keys[t] = (cell_of[j, 0] << 32) | (cell_of[j, 1] & 0xFFFFFFFF)


@njit(cache=True, inline="always")
def _row_range(i_t, lo, hi, px, py, sx, sy, xs, ys, pot, sig2, eps24, rc2, k, beta, contact,
               want_div, acc):
    """Accumulate the force of candidates [lo, hi) (shifted by sx, sy) on a particle."""
    fx, fy, div = acc
    for t in range(lo, hi):
        dx = px - (xs[t] + sx)
        dy = py - (ys[t] + sy)
        r2 = dx * dx + dy * dy
        if r2 < rc2 and t != i_t:
            f = _pair_force(r2, pot, sig2, eps24, rc2, k, beta, contact)
            fx += f * dx
            fy += f * dy
            if want_div:
                div += _pair_divergence(r2, pot, sig2, eps24, k, beta, contact)
    return fx, fy, div


@njit(cache=True, inline="always")
def _grid_force_on(t_i, nc, L, cell_start, xs, ys, pot, sig2, eps24, rc2, k, beta, contact,
                   want_div, side):
    """Force on the particle at sorted index t_i: three row ranges of three cells each."""
    px, py = xs[t_i], ys[t_i]
    inv = 1.0 / side
    cx = min(max(int(px * inv), 0), nc - 1)
    cy = min(max(int(py * inv), 0), nc - 1)
    acc = (0.0, 0.0, 0.0)
    for oy in range(-1, 2):
        ry, sy = neighbors.neighbor_cell(cy, oy, nc, L)
        row = ry * nc
        if 0 < cx < nc - 1:
            acc = _row_range(t_i, cell_start[row + cx - 1], cell_start[row + cx + 2], px, py,
                             0.0, sy, xs, ys, pot, sig2, eps24, rc2, k, beta, contact, want_div,
                             acc)
        else:
            for ox in range(-1, 2):
                rx, sx = neighbors.neighbor_cell(cx, ox, nc, L)
                acc = _row_range(t_i, cell_start[row + rx], cell_start[row + rx + 1], px, py,
                                 sx, sy, xs, ys, pot, sig2, eps24, rc2, k, beta, contact,
                                 want_div, acc)
    return acc


@njit(cache=True, parallel=True)
def _grid_forces_parallel(order, nc, L, side, cell_start, xs, ys, pot, sig2, eps24, rc2, k,
                          beta, contact, force, div, want_div):
    for t in prange(order.shape[0]):
        fx, fy, dv = _grid_force_on(t, nc, L, cell_start, xs, ys, pot, sig2, eps24, rc2, k,
                                    beta, contact, want_div, side)
        i = order[t]
        force[i, 0], force[i, 1], div[i] = fx, fy, dv


@njit(cache=True)
def _grid_forces_serial(order, nc, L, side, cell_start, xs, ys, pot, sig2, eps24, rc2, k, beta,
                        contact, force, div, want_div):
    for t in range(order.shape[0]):
        fx, fy, dv = _grid_force_on(t, nc, L, cell_start, xs, ys, pot, sig2, eps24, rc2, k,
                                    beta, contact, want_div, side)
        i = order[t]
        force[i, 0], force[i, 1], div[i] = fx, fy, dv


@njit(cache=True, parallel=True, error_model="numpy")
def _verlet_forces_parallel(pos, L, nb, nb_count, pot, sig2, eps24, rc2, k, beta, contact, force):
    """Force on every particle from its full (index-sorted) Verlet list. Strict IEEE order,
    no fast-math: the sum over the pairs inside the cutoff is then the same whenever the
    list was built, which keeps resumed runs bit-identical. (The loop body is written out
    here: an inlined helper taking the arrays would add reference counting per particle.)
    """
    inv_L = 1.0 / L
    for i in prange(pos.shape[0]):
        px, py = pos[i, 0], pos[i, 1]
        fx = fy = 0.0
        for a in range(nb_count[i]):
            j = nb[i, a]
            dx = px - pos[j, 0]
            dy = py - pos[j, 1]
            dx -= L * math.floor(dx * inv_L + 0.5)
            dy -= L * math.floor(dy * inv_L + 0.5)
            r2 = dx * dx + dy * dy
            if r2 < rc2:
                f = _pair_force(r2, pot, sig2, eps24, rc2, k, beta, contact)
                fx += f * dx
                fy += f * dy
        force[i, 0], force[i, 1] = fx, fy


@njit(cache=True, error_model="numpy")
def _verlet_forces_serial(pos, L, nb, nb_count, pot, sig2, eps24, rc2, k, beta, contact, force):
    """Newton's third law over the upper half (j > i) of the index-sorted lists.

    Each pair is computed once and scattered to i (+) and j (−). Visiting i in
    increasing order, particle i receives its terms in increasing j, exactly the order of
    :func:`_verlet_forces_parallel`'s sum, and −(f·d) is the exact negation, so the forces are
    bit-identical to the threaded full-list kernel at half the pair work.
    """
    inv_L = 1.0 / L
    n = pos.shape[0]
    for i in range(n):
        force[i, 0] = 0.0
        force[i, 1] = 0.0
    for i in range(n):
        px, py = pos[i, 0], pos[i, 1]
        fx, fy = force[i, 0], force[i, 1]
        m = nb_count[i]
        a = m
        while a > 0 and nb[i, a - 1] > i:  # start of the j > i half (lists are short)
            a -= 1
        for b in range(a, m):
            j = nb[i, b]
            dx = px - pos[j, 0]
            dy = py - pos[j, 1]
            dx -= L * math.floor(dx * inv_L + 0.5)
            dy -= L * math.floor(dy * inv_L + 0.5)
            r2 = dx * dx + dy * dy
            if r2 < rc2:
                f = _pair_force(r2, pot, sig2, eps24, rc2, k, beta, contact)
                fx += f * dx
                fy += f * dy
                force[j, 0] -= f * dx
                force[j, 1] -= f * dy
        force[i, 0], force[i, 1] = fx, fy


PAIR_BLOCK = 512  # pairs per block of the flat-list WCA kernel (buffers stay in L1)


@njit(cache=True, error_model="numpy")
def _half_pairs(nb, nb_count, pi, pj):
    """Flatten the upper halves (j > i) of the index-sorted Verlet lists into pair arrays,
    ordered by (i, j). Returns the pair count, or minus the count needed if ``pi`` is
    too short (nothing usable is written then)."""
    n = nb.shape[0]
    size = pi.shape[0]
    m = 0
    for i in range(n):
        c = nb_count[i]
        if m + c >= size:  # no room for the branch-free writes: count what is needed
            for k in range(i, n):
                for b in range(nb_count[k]):
                    m += nb[k, b] > k
            return -(m + 1)
        for b in range(c):  # branch-free compaction: write each, keep those with j > i
            j = nb[i, b]
            pi[m] = i
            pj[m] = j
            m += j > i
    return m


@njit(cache=True, error_model="numpy")
def _wca_pair_forces_serial(pos, L, pi, pj, m, sig2, eps24, rc2, buf, force):
    """WCA forces from the flat half pair list of :func:`_half_pairs`, bit-identical to
    :func:`_verlet_forces_serial` (and so to the threaded full-list kernel).

    Per block of pairs: a gather of the separations, a branch-free force loop over
    contiguous buffers (LLVM vectorises both: same IEEE operations per pair, in the same
    order, no fast-math) and the scatter of ±f·d in (i, j) order. Every particle then
    receives its terms in increasing partner index, as before. Pairs beyond the cutoff
    contribute f = 0, i.e. ±0.0 terms, which leave every sum unchanged: a sum that starts
    at +0.0 never becomes −0.0 in round-to-nearest, and x ± 0.0 = x otherwise.
    """
    inv_L = 1.0 / L
    n = pos.shape[0]
    for i in range(n):
        force[i, 0] = 0.0
        force[i, 1] = 0.0
    bx = buf[0]
    by = buf[1]
    block = bx.shape[0]
    for p0 in range(0, m, block):
        nbk = min(block, m - p0)
        for q in range(nbk):
            i = np.uint64(pi[p0 + q])  # unsigned: no negative-index wraparound code
            j = np.uint64(pj[p0 + q])
            bx[q] = pos[i, 0] - pos[j, 0]
            by[q] = pos[i, 1] - pos[j, 1]
        for q in range(nbk):
            dx = bx[q]
            dy = by[q]
            dx -= L * np.floor(dx * inv_L + 0.5)  # np.floor: stays a float (math.floor
            dy -= L * np.floor(dy * inv_L + 0.5)  # round-trips through int64), same value
            r2 = dx * dx + dy * dy
            s6 = (sig2 / r2) ** 3
            f = eps24 * (2.0 * s6 * s6 - s6) / r2
            f = f if r2 < rc2 else 0.0
            bx[q] = f * dx
            by[q] = f * dy
        for q in range(nbk):
            i = np.uint64(pi[p0 + q])
            j = np.uint64(pj[p0 + q])
            force[i, 0] += bx[q]
            force[i, 1] += by[q]
            force[j, 0] -= bx[q]
            force[j, 1] -= by[q]


_FAST = dict(fastmath={"reassoc", "contract", "arcp", "nsz"}, error_model="numpy")


@njit(cache=True, parallel=True, **_FAST)
def _forces_parallel(pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot, sig2,
                     eps24, rc2, k, beta, contact, force, div, want_div):
    for i in prange(pos.shape[0]):
        fx, fy, dv = _force_on(i, pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys,
                               pot, sig2, eps24, rc2, k, beta, contact, want_div)
        force[i, 0], force[i, 1], div[i] = fx, fy, dv


@njit(cache=True, **_FAST)
def _forces_serial(pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot, sig2, eps24,
                   rc2, k, beta, contact, force, div, want_div):
    for i in range(pos.shape[0]):
        fx, fy, dv = _force_on(i, pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys,
                               pot, sig2, eps24, rc2, k, beta, contact, want_div)
        force[i, 0], force[i, 1], div[i] = fx, fy, dv


def _compute_forces_for(parallel: bool):
    """:func:`compute_forces` for threaded (``parallel``) or serial sums, compiled with
    ``parallel`` a constant (a closure cell): only that path's kernels compile."""

    @njit(cache=True)
    def _compute_forces(pos, L, side, ncell, reach, cell_of, bucket_of, bucket_start, order, xs,
                        ys, keys, pot, sig2, eps24, rc2, k, beta, contact, kappa, force, div,
                        want_div, grid_nc):
        """Pair forces plus the trap −κ(x − L/2); and ∇·F if ``want_div``.

        With ``grid_nc`` >= 3 a direct row-major grid is used (three contiguous row ranges
        per particle); otherwise the general hashed cell list (small boxes: one cell).
        """
        n = pos.shape[0]
        if pot == 0:
            for i in range(n):
                force[i, 0] = force[i, 1] = div[i] = 0.0
        elif grid_nc >= 3:
            gside = L / grid_nc
            neighbors.build_grid2d(pos, grid_nc, gside, bucket_start, order, xs, ys)
            if parallel:
                _grid_forces_parallel(order, grid_nc, L, gside, bucket_start, xs, ys, pot, sig2,
                                      eps24, rc2, k, beta, contact, force, div, want_div)
            else:
                _grid_forces_serial(order, grid_nc, L, gside, bucket_start, xs, ys, pot, sig2, eps24,
                                    rc2, k, beta, contact, force, div, want_div)
        else:
            neighbors.build(pos, side, ncell, cell_of, bucket_of, bucket_start, order)
            _gather(pos, order, xs, ys)
            _keys(cell_of, order, keys)
            if parallel:
                _forces_parallel(pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot,
                                 sig2, eps24, rc2, k, beta, contact, force, div, want_div)
            else:
                _forces_serial(pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot, sig2,
                               eps24, rc2, k, beta, contact, force, div, want_div)
        if kappa > 0.0:
            c = 0.5 * L
            for i in range(n):
                force[i, 0] -= kappa * (pos[i, 0] - c)
                force[i, 1] -= kappa * (pos[i, 1] - c)
                div[i] -= 2.0 * kappa

    return _compute_forces


# module globals, so that the step loops call them by name (a dispatcher in a closure cell
# would enter their cache key, and pickles differently in every process)
_compute_forces_serial = _compute_forces_for(False)
_compute_forces_parallel = _compute_forces_for(True)


def compute_forces(parallel: bool):
    """The compiled pair-force sum (serial, or threaded if ``parallel``): arguments as
    :func:`_compute_forces_for`'s function."""
    return _compute_forces_parallel if parallel else _compute_forces_serial
