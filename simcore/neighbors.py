"""O(N) cell lists (2D/3D, periodic, open or one-cell axes), shared by the engines.

Particles are binned into cubic cells of side >= cutoff / reach. A neighbour search
visits the (2·reach+1)^d surrounding cells. Cells are stored in a hash table of
``2^k >= 2N`` buckets (a counting sort by bucket), so open space needs no bounding box
and memory stays O(N) however far agents drift. Each visited bucket is filtered by the
exact cell coordinates, so hash collisions cost time but never double counts.

Choosing a plan: :func:`auto_plan` (a uniform number density, the default everywhere),
:func:`extent_plan_into` (a group in open space, from its bounding box) and
:func:`periodic_work` (a periodic plan's expected work, to weigh it against all pairs).

Axes are described by three per-axis arrays (see :func:`plan`):

``box[k]``    periodic side length, 0 if the axis does not wrap;
``ncell[k]``  number of cells along a periodic axis (wrapping modulo ncell), 0 for an
              open axis (unbounded integer cell coordinates), 1 for an axis handled as a
              single cell (too short to hold 2·reach+1 cells, or a flat 2D z-axis);
``reach[k]``  stencil half-width along the axis (0 when ncell == 1).

All functions are Numba-compiled and allocation-free; the caller owns the work arrays
(:func:`allocate`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_P1, _P2, _P3 = 73856093, 19349663, 83492791
AUTO_MAX_REACH = 4  # auto_plan's defaults
AUTO_CELL_COST = 25.0


@njit(cache=True)
def _plan_axes_into(box, cutoff, reach, ndim, side, ncell, reach_axis):
    """Cell side, cell count and stencil reach per axis for ``reach`` cells per cutoff,
    written into ``side``/``ncell``/``reach_axis`` (compiled: a run plans every chunk)."""
    for k in range(3):
        if k >= ndim:
            ncell[k], reach_axis[k], side[k] = 1, 0, 1.0
            continue
        ncell[k], reach_axis[k], side[k] = 0, reach, cutoff / reach
        if box[k] > 0:
            nc = int(math.floor(box[k] / (cutoff / reach)))
            if nc < 2 * reach + 1:
                ncell[k], reach_axis[k], side[k] = 1, 0, box[k]
            else:
                ncell[k], side[k] = nc, box[k] / nc


def empty_plan(box):
    """A plan's four arrays: ``box`` (float64, 3) and side, ncell, reach (float64, int64,
    int64; 3 each) for :func:`auto_plan_into` or a plan function to fill."""
    return (np.array(box, dtype=np.float64).reshape(3), np.empty(3),
            np.empty(3, dtype=np.int64), np.empty(3, dtype=np.int64))


def plan(box, cutoff: float, reach: int = 1, ndim: int = 3):
    """Cell geometry for a search radius ``cutoff``.

    Parameters
    ----------
    box : sequence of 3 floats, periodic side per axis (0 = open axis).
    cutoff : largest interaction distance (model length units).
    reach : cells per cutoff; 1 gives cells of side >= cutoff and a 3^d stencil,
        2 gives half-size cells and a 5^d stencil (fewer candidate pairs).
    ndim : 2 flattens the z axis into one cell.

    Returns ``(box, cell_side, ncell, reach)`` as float64/int64 arrays of length 3.
    """
    box, side, ncell, reach_axis = empty_plan(box)
    _plan_axes_into(box, float(cutoff), int(reach), int(ndim), side, ncell, reach_axis)
    return box, side, ncell, reach_axis


def auto_plan(box, cutoff: float, density: float, ndim: int = 3,
              max_reach: int = AUTO_MAX_REACH, cell_cost: float = AUTO_CELL_COST):
    """The :func:`plan` (reach 1 to ``max_reach``) with the least expected work per particle.

    Work = candidate pairs (``density`` × stencil volume, clipped to the box) +
    ``cell_cost`` × visited cells (25 fitted on the vectorised Couzin kernel: a cell visit
    costs about 40 ns, a candidate pair about 1.5 ns); ``density`` is particles per unit volume (area in 2D).
    Smaller cells (larger reach) cut candidates toward the (4π/3)·rc³ sphere, at the
    price of more cells to visit.
    """
    box, side, ncell, reach_axis = empty_plan(box)
    auto_plan_into(box, float(cutoff), float(density), int(ndim), int(max_reach),
                   float(cell_cost), side, ncell, reach_axis)
    return box, side, ncell, reach_axis


@njit(cache=True)
def auto_plan_into(box, cutoff, density, ndim, max_reach, cell_cost, side, ncell, reach_axis):
    """:func:`auto_plan` written into ``side``/``ncell``/``reach_axis`` (compiled, for
    callers that plan every chunk of a run)."""
    best_reach, best_work = 1, math.inf
    for reach in range(1, max_reach + 1):
        _plan_axes_into(box, cutoff, reach, ndim, side, ncell, reach_axis)
        extent, cells = 1.0, 1
        for k in range(ndim):
            span = (2 * reach_axis[k] + 1) * side[k]
            extent *= min(box[k], span) if box[k] > 0 else span
            cells *= 2 * reach_axis[k] + 1
        work = density * extent + cell_cost * cells
        if work < best_work * 0.97:  # prefer the smaller stencil unless clearly better
            best_reach, best_work = reach, work
    _plan_axes_into(box, cutoff, best_reach, ndim, side, ncell, reach_axis)


@njit(cache=True, inline="always")
def window_fraction(span, extent):
    """Expected fraction of a group of side ``extent`` that a stencil window of width
    ``span`` covers, centred on a member placed uniformly in the group (1 once span >=
    2·extent; span/extent - span²/(4·extent²) below: the window overhangs the group's
    edges)."""
    if span >= 2.0 * extent:
        return 1.0
    ratio = span / extent
    return ratio - 0.25 * ratio * ratio


@njit(cache=True)
def extent_plan_into(cutoff, n, extent_x, extent_y, extent_z, ndim, max_reach, cell_cost, side,
                     ncell, reach_axis):
    """The open-space plan with the least expected work per particle for ``n`` particles
    spread over a group of sides ``extent_x``, ``extent_y``, ``extent_z`` (model lengths:
    e.g. their bounding box), written into ``side``/``ncell``/``reach_axis``.

    Unlike :func:`auto_plan_into`, whose density fills the whole stencil, the candidates
    are the group's members inside a member's stencil: ``n`` × the product over axes of
    :func:`window_fraction` (a stencil wider than the group finds all of it, whatever
    its reach). Work = candidates + ``cell_cost`` × visited cells, for reach 1 to
    ``max_reach`` and for one cell per axis (all pairs: ``n`` candidates, one cell), which
    a group narrower than its stencil takes. The smallest stencil wins unless a larger one
    is 3 % better, as in :func:`auto_plan_into`. Scalar extents: no allocation per chunk.
    """
    best_reach, best_work = 0, float(n) + cell_cost  # one cell per axis
    for reach in range(1, max_reach + 1):
        span = (2 * reach + 1) * (cutoff / reach)
        found = float(n) * window_fraction(span, extent_x)
        if ndim > 1:
            found *= window_fraction(span, extent_y)
        if ndim > 2:
            found *= window_fraction(span, extent_z)
        work = found + cell_cost * (2 * reach + 1) ** ndim
        if work < best_work * 0.97:
            best_reach, best_work = reach, work
    for k in range(3):
        if best_reach == 0 or k >= ndim:
            side[k], ncell[k], reach_axis[k] = 1.0, 1, 0
        else:  # an open axis, as _plan_axes_into plans it
            side[k], ncell[k], reach_axis[k] = cutoff / best_reach, 0, best_reach


#: Costs of visiting a cell, in candidate pairs, in a uniform periodic system (fitted on
#: Couzin's float32 pair loop, whose every non-empty cell runs whole 16-lane vectors:
#: benchmarks/RESULTS.md, session 28)
OCCUPIED_CELL_COST = 50.0
EMPTY_CELL_COST = 5.0


def periodic_work(n: int, box, side, ncell, reach, ndim: int = 3,
                  occupied_cost: float = OCCUPIED_CELL_COST,
                  empty_cost: float = EMPTY_CELL_COST) -> float:
    """Expected work per particle of a periodic plan (``box``, ``side``, ``ncell``,
    ``reach`` as :func:`plan` returns them) for ``n`` particles spread uniformly: the
    candidates (the number density × the stencil's volume, at most the box's), plus
    ``occupied_cost`` per visited cell holding a particle and ``empty_cost`` per empty one
    (Poisson occupancy at the cells' mean count). One cell per axis costs ``n`` +
    ``occupied_cost``: all pairs."""
    box = np.asarray(box, dtype=float)
    volume = float(np.prod(box[:ndim]))
    density = n / volume
    spanned, cell_volume, cells = 1.0, 1.0, 1
    for k in range(ndim):
        if ncell[k] == 1:
            spanned *= box[k]
            cell_volume *= box[k]
        else:
            width = 2 * int(reach[k]) + 1
            spanned *= min(width * side[k], box[k])
            cell_volume *= side[k]
            cells *= width
    occupied = -math.expm1(-density * cell_volume)
    return density * spanned + cells * (occupied_cost * occupied + empty_cost * (1.0 - occupied))


def all_pairs_plan(box, ndim: int = 3):
    """A plan with every axis as one cell: the search degenerates to all pairs."""
    box = np.asarray(box, dtype=np.float64).reshape(3)
    return box, np.ones(3), np.ones(3, dtype=np.int64), np.zeros(3, dtype=np.int64)


def allocate(n: int) -> dict[str, np.ndarray]:
    """Work arrays for :func:`build` with ``n`` particles."""
    nb = 1 << max(4, int(math.ceil(math.log2(max(2 * n, 2)))))
    return {
        "cell_of": np.zeros((n, 3), dtype=np.int64),
        "bucket_of": np.zeros(n, dtype=np.int64),
        "bucket_start": np.zeros(nb + 1, dtype=np.int64),
        "order": np.zeros(n, dtype=np.int64),
    }


@njit(cache=True, inline="always")
def cell_hash(cx, cy, cz, mask):
    """Bucket of integer cell coordinates (cx, cy, cz)."""
    return (cx * _P1 + cy * _P2 + cz * _P3) & mask


@njit(cache=True, inline="always")
def wrap_cell(c, nc):
    """Cell coordinate wrapped into [0, nc) for a periodic axis; unchanged when nc == 0."""
    if nc > 0:
        c = c % nc
    return c


@njit(cache=True, inline="always")
def neighbor_cell(c, offset, nc, box):
    """Visited cell coordinate and the periodic image shift of its members.

    For a periodic axis with nc >= 2·reach + 1 cells, members of a wrapped cell are
    shifted by ±box so that ``x_j + shift - x_i`` is already the minimum image for any
    pair closer than the cutoff (no rounding or division per pair). |offset| < nc, so a
    single compare wraps (no integer division: it would cost more than the pair loop).
    """
    raw = c + offset
    if nc > 1:
        if raw < 0:
            return raw + nc, -box
        if raw >= nc:
            return raw - nc, box
    return raw, 0.0


@njit(cache=True, inline="always")
def min_image(d, box):
    """Minimum-image displacement along an axis of side ``box`` (no-op when box == 0)."""
    if box > 0.0:
        d -= box * np.round(d / box)
    return d


@njit(cache=True)
def build(pos, side, ncell, cell_of, bucket_of, bucket_start, order):
    """Bin ``pos`` (N, 3) into cells and counting-sort particle indices by bucket.

    Periodic positions must already be wrapped into [0, box). On return,
    ``order[bucket_start[b]:bucket_start[b + 1]]`` are the particles in bucket b.
    """
    n = pos.shape[0]
    nb = bucket_start.shape[0] - 1
    mask = nb - 1
    for b in range(nb + 1):
        bucket_start[b] = 0
    for i in range(n):
        for k in range(3):
            if ncell[k] == 1:
                c = 0
            else:
                c = int(math.floor(pos[i, k] / side[k]))
                if ncell[k] > 0:  # guard round-off at the upper edge of the box
                    if c >= ncell[k]:
                        c = ncell[k] - 1
                    elif c < 0:
                        c = 0
            cell_of[i, k] = c
        b = cell_hash(cell_of[i, 0], cell_of[i, 1], cell_of[i, 2], mask)
        bucket_of[i] = b
        bucket_start[b + 1] += 1
    for b in range(nb):
        bucket_start[b + 1] += bucket_start[b]
    # fill: reuse bucket_start shifted, then restore
    for i in range(n):
        b = bucket_of[i]
        order[bucket_start[b]] = i
        bucket_start[b] += 1
    for b in range(nb, 0, -1):
        bucket_start[b] = bucket_start[b - 1]
    bucket_start[0] = 0


@njit(cache=True)
def count_within(pos, box, ncell, reach, cell_of, bucket_start, order, cutoff, counts):
    """Number of other particles within ``cutoff`` of each particle (minimum image).

    A small reference consumer of the cell list, used by tests and analyses.
    """
    n = pos.shape[0]
    mask = bucket_start.shape[0] - 2
    c2 = cutoff * cutoff
    for i in range(n):
        m = 0
        for ox in range(-reach[0], reach[0] + 1):
            cx = wrap_cell(cell_of[i, 0] + ox, ncell[0])
            for oy in range(-reach[1], reach[1] + 1):
                cy = wrap_cell(cell_of[i, 1] + oy, ncell[1])
                for oz in range(-reach[2], reach[2] + 1):
                    cz = wrap_cell(cell_of[i, 2] + oz, ncell[2])
                    b = cell_hash(cx, cy, cz, mask)
                    for t in range(bucket_start[b], bucket_start[b + 1]):
                        j = order[t]
                        if j == i or cell_of[j, 0] != cx or cell_of[j, 1] != cy or cell_of[j, 2] != cz:
                            continue
                        dx = min_image(pos[j, 0] - pos[i, 0], box[0])
                        dy = min_image(pos[j, 1] - pos[i, 1], box[1])
                        dz = min_image(pos[j, 2] - pos[i, 2], box[2])
                        if dx * dx + dy * dy + dz * dz < c2:
                            m += 1
        counts[i] = m


def grid2d_shape(box: float, cutoff: float) -> int:
    """Cells per side of a direct 2D periodic grid (side >= cutoff), or 0 if under 3."""
    nc = int(math.floor(box / cutoff)) if cutoff > 0 else 0
    return nc if nc >= 3 else 0


@njit(cache=True)
def build_grid2d(pos, nc, side, cell_start, order, xs, ys):
    """Counting sort of 2D periodic positions into an nc × nc row-major grid.

    ``order[cell_start[c]:cell_start[c + 1]]`` are the particles of cell c = cy·nc + cx,
    and ``xs, ys`` receive their coordinates in that order, so the three cells
    (cx − 1, cx, cx + 1) of a row are one contiguous range unless the row wraps.
    """
    n = pos.shape[0]
    m = nc * nc
    for c in range(m + 1):
        cell_start[c] = 0
    inv = 1.0 / side
    for i in range(n):
        cx = int(pos[i, 0] * inv)
        cy = int(pos[i, 1] * inv)
        cx = min(max(cx, 0), nc - 1)
        cy = min(max(cy, 0), nc - 1)
        cell_start[cy * nc + cx + 1] += 1
    for c in range(m):
        cell_start[c + 1] += cell_start[c]
    for i in range(n):
        cx = min(max(int(pos[i, 0] * inv), 0), nc - 1)
        cy = min(max(int(pos[i, 1] * inv), 0), nc - 1)
        c = cy * nc + cx
        t = cell_start[c]
        order[t] = i
        xs[t] = pos[i, 0]
        ys[t] = pos[i, 1]
        cell_start[c] = t + 1
    for c in range(m, 0, -1):
        cell_start[c] = cell_start[c - 1]
    cell_start[0] = 0


@njit(cache=True, inline="always")
def _verlet_append(t, lo, hi, px, py, sx, sy, xs, ys, order, rl2, nb, i, m, last):
    """Append the candidates [lo, hi) of the sorted grid within r_list to row i of ``nb``,
    branch-free: each is written at min(m, last) and kept by counting it (the distance
    test is unpredictable; a branch per candidate cost more than the write)."""
    for u in range(lo, hi):
        dx = px - (xs[u] + sx)
        dy = py - (ys[u] + sy)
        keep = (dx * dx + dy * dy < rl2) & (u != t)
        nb[i, min(m, last)] = order[u]
        m += keep
    return m


@njit(cache=True, inline="always")
def _verlet_row(t, L, nc, inv, cell_start, order, xs, ys, rl2, nb, nb_count, ref, pos):
    """The index-sorted Verlet list of the particle at sorted slot ``t``; returns its size,
    or a number > ``nb.shape[1]`` if the row is too short (the last column is scratch for
    the branch-free append, so a row holds at most ``nb.shape[1] - 1`` neighbours)."""
    cap = nb.shape[1]
    last = cap - 1
    i = order[t]
    px, py = xs[t], ys[t]
    cx = min(max(int(px * inv), 0), nc - 1)
    cy = min(max(int(py * inv), 0), nc - 1)
    m = 0
    for oy in range(-1, 2):
        ry, sy = neighbor_cell(cy, oy, nc, L)
        row = ry * nc
        if 0 < cx < nc - 1:  # cells cx - 1 .. cx + 1 of the row: one contiguous range
            m = _verlet_append(t, cell_start[row + cx - 1], cell_start[row + cx + 2], px, py,
                               0.0, sy, xs, ys, order, rl2, nb, i, m, last)
        else:
            for ox in range(-1, 2):
                rx, sx = neighbor_cell(cx, ox, nc, L)
                c = row + rx
                m = _verlet_append(t, cell_start[c], cell_start[c + 1], px, py, sx, sy, xs,
                                   ys, order, rl2, nb, i, m, last)
    nb_count[i] = m
    if m < cap:  # insertion sort by particle index (lists are short)
        for a in range(1, m):
            v = nb[i, a]
            b = a - 1
            while b >= 0 and nb[i, b] > v:
                nb[i, b + 1] = nb[i, b]
                b -= 1
            nb[i, b + 1] = v
    ref[i, 0], ref[i, 1] = pos[i, 0], pos[i, 1]
    return m if m < cap else m + 1


@njit(cache=True)
def build_verlet2d(pos, L, nc, side, cell_start, order, xs, ys, r_list, nb, nb_count, ref):
    """Verlet lists within ``r_list`` (cutoff + skin) in a periodic 2D box, from the grid.

    Each list is sorted by particle index, so a force summed over the pairs inside the
    cutoff in list order does not depend on when the list was built (nor on the thread
    count). Returns the largest count found; if it exceeds ``nb.shape[1]`` the lists are
    incomplete and the caller must enlarge ``nb`` and rebuild. ``ref`` receives the
    positions at build time, for the displacement criterion.
    """
    build_grid2d(pos, nc, side, cell_start, order, xs, ys)
    inv = 1.0 / side
    largest = 0
    for t in range(pos.shape[0]):
        largest = max(largest, _verlet_row(t, L, nc, inv, cell_start, order, xs, ys,
                                           r_list * r_list, nb, nb_count, ref, pos))
    return largest


@njit(cache=True, parallel=True)
def build_verlet2d_parallel(pos, L, nc, side, cell_start, order, xs, ys, r_list, nb, nb_count,
                            ref):
    """Threaded :func:`build_verlet2d` (same lists; the grid sort itself stays serial)."""
    build_grid2d(pos, nc, side, cell_start, order, xs, ys)
    inv = 1.0 / side
    largest = 0
    for t in prange(pos.shape[0]):
        largest = max(largest, _verlet_row(t, L, nc, inv, cell_start, order, xs, ys,
                                           r_list * r_list, nb, nb_count, ref, pos))
    return largest


@njit(cache=True, inline="always")
def _displacement2(i, pos, ref, L, inv):
    dx = pos[i, 0] - ref[i, 0]
    dy = pos[i, 1] - ref[i, 1]
    dx -= L * math.floor(dx * inv + 0.5)
    dy -= L * math.floor(dy * inv + 0.5)
    return dx * dx + dy * dy


@njit(cache=True)
def max_displacement2(pos, ref, L):
    """Largest squared minimum-image displacement since the lists were built."""
    best = 0.0
    inv = 1.0 / L
    for i in range(pos.shape[0]):
        best = max(best, _displacement2(i, pos, ref, L, inv))
    return best


@njit(cache=True, parallel=True)
def max_displacement2_parallel(pos, ref, L):
    """Threaded :func:`max_displacement2` (a max reduction: independent of the order)."""
    best = 0.0
    inv = 1.0 / L
    for i in prange(pos.shape[0]):
        best = max(best, _displacement2(i, pos, ref, L, inv))
    return best
