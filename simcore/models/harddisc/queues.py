"""Event queues and cell lists of the hard-disc kernel: the calendar queue, the cell
links, renumbering by cell and the initial queue."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simcore.models.harddisc.events import _before, _INF, _pick


# ---- calendar queue: buckets of width w (doubly linked lists, unsorted), one "year" of
# nb buckets, an overflow list for later events; the minimum of the current bucket is
# found by a linear scan. Ties broken by the particle index, as in the tree.
@njit(cache=True, inline="always")
def _less(E, a, b):
    ka = E[a, 3]
    kb = E[b, 3]
    return ka < kb or (ka == kb and a < b)


@njit(cache=True, inline="always")
def _cq_bucket(key, base, w):
    """Absolute bucket number of a key (-1: beyond any year, e.g. inf)."""
    f = (key - base) / w
    if not f < 4.0e18:
        return -1
    if f < 0.0:
        return 0
    return int(f)


@njit(cache=True, inline="always")
def _cq_insert(i, key, Q, bhead, bnext, bprev, binof, nb):
    """Q = [base, w, cur]: buckets [base + b w, base + (b+1) w); the current year is the
    aligned block of nb buckets holding bucket cur; later keys go to the overflow (slot nb)."""
    b = _cq_bucket(key, Q[0], Q[1])
    cur = int(Q[2])
    if b < 0 or b >= (cur // nb + 1) * nb:
        slot = nb
    else:
        slot = max(b, cur) % nb
    binof[i] = slot
    _link(i, slot, bhead, bnext, bprev)


@njit(cache=True, inline="always")
def _cq_remove(i, bhead, bnext, bprev, binof):
    _unlink(i, binof[i], bhead, bnext, bprev)


@njit(cache=True)
def _cq_top(E, Q, bhead, bnext, bprev, binof, nb):
    """Particle with the smallest key (advancing the current bucket as needed), -1 if none.

    Invariant: slot b % nb holds exactly the entries of bucket b for cur <= b < the end of
    the current (aligned) year; later ones wait in the overflow list (slot nb). Buckets
    are a monotone function of the key, so the minimum of the first non-empty bucket
    (ties by index) is the global minimum, exactly as in the heap.
    """
    while True:
        cur = int(Q[2])
        end = (cur // nb + 1) * nb
        for b in range(cur, end):
            best = -1
            j = bhead[b % nb]
            while j >= 0:
                if best < 0 or _less(E, j, best):
                    best = j
                j = bnext[j]
            if best >= 0:
                Q[2] = b
                return best
        # the year is exhausted: jump to the earliest overflow bucket and redistribute
        j = bhead[nb]
        kmin = _INF
        while j >= 0:
            if E[j, 3] < kmin:
                kmin = E[j, 3]
            j = bnext[j]
        b = _cq_bucket(kmin, Q[0], Q[1])
        if b < 0:
            return -1
        Q[2] = max(b, end)
        j = bhead[nb]
        bhead[nb] = -1
        while j >= 0:
            nx = bnext[j]
            _cq_insert(j, E[j, 3], Q, bhead, bnext, bprev, binof, nb)
            j = nx


@njit(cache=True, inline="always")
def _link(i, c, head, nxt, prv):
    h = head[c]
    nxt[i] = h
    prv[i] = -1
    if h >= 0:
        prv[h] = i
    head[c] = i


@njit(cache=True, inline="always")
def _unlink(i, c, head, nxt, prv):
    p = prv[i]
    q = nxt[i]
    if p >= 0:
        nxt[p] = q
    else:
        head[c] = q
    if q >= 0:
        prv[q] = p


@njit(cache=True)
def _renumber(P, I, E, perm, ncx, ncy):
    """Renumber the particles by cell (counting sort, stable): rows of P, I, E and perm
    move together; the partner indices I[:, 2] are mapped to the new numbers."""
    n = P.shape[0]
    nc = ncx * ncy
    start = np.zeros(nc + 1, dtype=np.int64)
    for i in range(n):
        start[I[i, 0] * ncy + I[i, 1] + 1] += 1
    for c in range(nc):
        start[c + 1] += start[c]
    new = np.empty(n, dtype=np.int64)  # new number of old particle i
    for i in range(n):
        c = I[i, 0] * ncy + I[i, 1]
        new[i] = start[c]
        start[c] += 1
    P2 = np.empty_like(P)
    I2 = np.empty_like(I)
    E2 = np.empty_like(E)
    perm2 = np.empty_like(perm)
    for i in range(n):
        k = new[i]
        for a in range(P.shape[1]):
            P2[k, a] = P[i, a]
        for a in range(I.shape[1]):
            I2[k, a] = I[i, a]
        for a in range(E.shape[1]):
            E2[k, a] = E[i, a]
        perm2[k] = perm[i]
        if I[i, 2] >= 0:
            I2[k, 2] = new[I[i, 2]]
    for k in range(n):  # (loops: slice assignment compiles a shape check, ~2.7 s)
        for a in range(P.shape[1]):
            P[k, a] = P2[k, a]
        for a in range(I.shape[1]):
            I[k, a] = I2[k, a]
        for a in range(E.shape[1]):
            E[k, a] = E2[k, a]
        perm[k] = perm2[k]


@njit(cache=True)
def _index_cells(I, head, nxt, prv, ncx, ncy):
    """Rebuild the cell lists from the cells stored in I[:, 0:2] (each list ascending)."""
    for c in range(ncx * ncy):
        head[c] = -1
    for i in range(I.shape[0] - 1, -1, -1):
        _link(i, I[i, 0] * ncy + I[i, 1], head, nxt, prv)


@njit(cache=True)
def _build_queue(E, tree, use_cq, Q, bhead, bnext, bprev, binof, first):
    """Queue all particles by their keys E[:, 3] (ties by particle index).

    Default: the tournament tree ``tree`` (2M, 2), M the power of two ≥ N, row k =
    (key, particle index as a float, exact below 2^53): leaf M + i holds particle i (the
    leaves beyond N hold key inf and index i, which never win), node k < M the earlier
    of its children 2k and 2k + 1, so node 1 holds the next event. The kernel updates a
    particle by climbing from its leaf (one sibling per level). The calendar queue's
    bucket width is set on the ``first`` build to about three events per bucket."""
    n = E.shape[0]
    if use_cq:
        nb = bhead.shape[0] - 1
        if first:
            rate = 0.0  # total event rate ≈ Σ 1/key
            for i in range(n):
                if 0.0 < E[i, 3] < _INF:
                    rate += 1.0 / E[i, 3]
            Q[0] = 0.0
            Q[1] = 3.0 / rate if rate > 0.0 else 1.0
            Q[2] = 0.0
        for b in range(nb + 1):
            bhead[b] = -1
        for i in range(n):
            _cq_insert(i, E[i, 3], Q, bhead, bnext, bprev, binof, nb)
    else:
        m = tree.shape[0] // 2
        for i in range(m):
            tree[m + i, 0] = E[i, 3] if i < n else _INF
            tree[m + i, 1] = i
        for k in range(m - 1, 0, -1):
            ka = tree[2 * k, 0]
            ja = tree[2 * k, 1]
            kb = tree[2 * k + 1, 0]
            jb = tree[2 * k + 1, 1]
            b = _before(kb, jb, ka, ja)
            tree[k, 0] = _pick(b, kb, ka)
            tree[k, 1] = _pick(b, jb, ja)


@njit(cache=True)
def _cq_move(i, key, Q, bhead, bnext, bprev, binof):
    nb = bhead.shape[0] - 1
    _cq_remove(i, bhead, bnext, bprev, binof)
    _cq_insert(i, key, Q, bhead, bnext, bprev, binof, nb)


@njit(cache=True)
def _load(pos, vel, Lx, Ly, xper, yper, ncx, ncy, P, I, perm):
    """Particle rows from the synchronised state at local time 0: P = (x, y, vx, vy, 0,
    counter 0, no partner counter) wrapped into a periodic box, I = (cell x, cell y, no
    partner)."""
    ax = Lx / ncx
    ay = Ly / ncy
    for i in range(pos.shape[0]):
        x = pos[i, 0]
        y = pos[i, 1]
        if xper:
            x -= Lx * math.floor(x / Lx)
            if x >= Lx:
                x -= Lx
        if yper:
            y -= Ly * math.floor(y / Ly)
            if y >= Ly:
                y -= Ly
        P[i, 0] = x
        P[i, 1] = y
        P[i, 2] = vel[i, 0]
        P[i, 3] = vel[i, 1]
        P[i, 4] = 0.0
        P[i, 5] = 0.0
        P[i, 6] = -1.0
        I[i, 0] = min(max(int(x / ax), 0), ncx - 1)
        I[i, 1] = min(max(int(y / ay), 0), ncy - 1)
        I[i, 2] = -1
        perm[i] = i
