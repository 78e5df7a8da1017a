"""The hard-disc event loop (:func:`_simulate`).

One hot kernel, kept whole on purpose: the event loop, queue updates and counters share
local variables that Numba keeps in registers; splitting it into calls costs time
(measured in benchmarks/harddisc.py).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simcore.models.harddisc.events import (_before, _contact_time, _cross_time, _INF, _min_image,
                                            _pick, _skip_cell, _wall_time, _wrap_cell)
from simcore.models.harddisc.queues import (_build_queue, _cq_move, _cq_top, _index_cells, _load,
                                            _renumber)


@njit(cache=True, inline="always")
def _streamed(x, v, dt):
    return x + v * dt


# error_model: _contact_time may divide by 0 (discarded); nogil: other Python threads
# run meanwhile
@njit(cache=True, error_model="numpy", nogil=True)
def _simulate(pos, vel, Lx, Ly, xper, yper, rw, sigma, inter, ncx, ncy, t_stop, max_coll,
              stats, P, I, E, head, nxt, prv, tree, use_cq, Q, bhead, bnext, bprev, binof, perm,
              resort_every):
    """Run the event loop from the synchronised state (pos, vel) at time 0 until t_stop
    (or until stats[0] reaches max_coll); synchronise everyone to the stop time, write
    pos and vel back and return that time.

    Work arrays (preallocated): P (N, 8) = x, y, vx, vy, t_local, collision counter,
    partner's counter at prediction, unused (one 64-byte row: a scan that picks a partner
    reads its counter from the row it has just loaded); I (N, 5) = cell x, cell y, pair
    partner, wall kind, crossing direction; E (N, 4) = pair, wall, crossing times and the
    queue key. Counters are floats (exact below 2^53).

    Internally the particles are renumbered by cell (``perm[k]`` = caller's index of
    internal particle k) at the start and every ``resort_every`` events (0: never), so
    that a cell's discs and the neighbouring cells' discs sit close in memory. A
    renumbering moves rows without any arithmetic; only the index tie-break of exactly
    equal event times could see it, and it is itself a deterministic function of the
    state at the kernel start, so runs stay reproducible and resumes bit-identical.

    The loop calls no function that takes an array (each such call, inlined or not,
    costs atomic reference-count updates of every array argument): the cell scan and
    the queue update are written out once, inside it, and the initial predictions go
    through the same code (``pending`` particles at t = 0, before the first event).

    ``tree`` (2M, 2), M the power of two ≥ N: the default queue, a tournament tree over
    the particles' keys (see :func:`~simcore.models.harddisc.queues._build_queue`).
    """
    n = pos.shape[0]
    sig2 = sigma * sigma
    ax = Lx / ncx
    ay = Ly / ncy
    _load(pos, vel, Lx, Ly, xper, yper, ncx, ncy, P, I, perm)
    if inter and n > 1:
        _renumber(P, I, E, perm, ncx, ncy)
    _index_cells(I, head, nxt, prv, ncx, ncy)
    cells = np.empty(9, dtype=np.int64)
    leaves = tree.shape[0] // 2  # leaf of particle i: leaves + i
    t_end = t_stop
    since = 0
    pending = 0  # particles 0..pending-1 have their first predictions
    while n > 0:
        j = -1
        d = -1
        stop = False
        if pending < n:  # initial predictions: as after a velocity change, at t = 0
            i = pending
            pending += 1
            t = 0.0
            mode = 0
        else:
            if pending == n:
                pending += 1
                _build_queue(E, tree, use_cq, Q, bhead, bnext, bprev, binof, True)
            if resort_every > 0 and since >= resort_every and inter:
                since = 0
                _renumber(P, I, E, perm, ncx, ncy)
                _index_cells(I, head, nxt, prv, ncx, ncy)
                _build_queue(E, tree, use_cq, Q, bhead, bnext, bprev, binof, False)
            since += 1
            if use_cq:
                i = _cq_top(E, Q, bhead, bnext, bprev, binof, bhead.shape[0] - 1)
                if i < 0:
                    break
            else:
                i = int(tree[1, 1])
            t = E[i, 3]
            if t > t_stop or t == _INF:
                break
            stats[5] += 1.0
            # handle the event; then i (and j after a collision) get new predictions:
            # mode 0 after a velocity change (pair, wall and crossing times), 1 for a stale
            # pair event (pair time only), 2 after a crossing in direction d (partial scan)
            if E[i, 0] <= E[i, 1] and E[i, 0] <= E[i, 2]:
                j = I[i, 2]
                if P[j, 5] != P[i, 6]:  # the partner collided since: recompute
                    stats[7] += 1.0
                    mode = 1
                    j = -1
                else:
                    mode = 0
                    for m in (i, j):
                        dt = t - P[m, 4]
                        P[m, 0] = _streamed(P[m, 0], P[m, 2], dt)
                        P[m, 1] = _streamed(P[m, 1], P[m, 3], dt)
                        P[m, 4] = t
                    dx = _min_image(P[i, 0] - P[j, 0], Lx, xper)
                    dy = _min_image(P[i, 1] - P[j, 1], Ly, yper)
                    r = math.sqrt(dx * dx + dy * dy)
                    nx_ = dx / r
                    ny_ = dy / r
                    dvn = (P[i, 2] - P[j, 2]) * nx_ + (P[i, 3] - P[j, 3]) * ny_
                    if dvn < 0.0:
                        P[i, 2] -= dvn * nx_
                        P[i, 3] -= dvn * ny_
                        P[j, 2] += dvn * nx_
                        P[j, 3] += dvn * ny_
                        stats[4] += -dvn * r
                    stats[0] += 1.0
                    P[i, 5] += 1.0
                    P[j, 5] += 1.0
                    if stats[0] >= max_coll:
                        t_end = t
                        stop = True
            else:
                dt = t - P[i, 4]
                P[i, 0] = _streamed(P[i, 0], P[i, 2], dt)
                P[i, 1] = _streamed(P[i, 1], P[i, 3], dt)
                P[i, 4] = t
                if E[i, 1] <= E[i, 2]:
                    mode = 0
                    if I[i, 3] == 0:
                        stats[2] += 2.0 * abs(P[i, 2])
                        P[i, 2] = -P[i, 2]
                    else:
                        stats[3] += 2.0 * abs(P[i, 3])
                        P[i, 3] = -P[i, 3]
                    stats[1] += 1.0
                    P[i, 5] += 1.0
                else:
                    mode = 2
                    stats[6] += 1.0
                    d = I[i, 4]
                    cx = I[i, 0]
                    cy = I[i, 1]
                    # unlink from the old cell (as _unlink)
                    c = cx * ncy + cy
                    p = prv[i]
                    q = nxt[i]
                    if p >= 0:
                        nxt[p] = q
                    else:
                        head[c] = q
                    if q >= 0:
                        prv[q] = p
                    if d == 0:
                        cx += 1
                        if cx == ncx:
                            cx = 0
                            P[i, 0] -= Lx
                    elif d == 1:
                        cx -= 1
                        if cx < 0:
                            cx = ncx - 1
                            P[i, 0] += Lx
                    elif d == 2:
                        cy += 1
                        if cy == ncy:
                            cy = 0
                            P[i, 1] -= Ly
                    else:
                        cy -= 1
                        if cy < 0:
                            cy = ncy - 1
                            P[i, 1] += Ly
                    I[i, 0] = cx
                    I[i, 1] = cy
                    # link at the head of the new cell (as _link)
                    c = cx * ncy + cy
                    h = head[c]
                    nxt[i] = h
                    prv[i] = -1
                    if h >= 0:
                        prv[h] = i
                    head[c] = i
        m = i
        while m >= 0:
            if not inter:
                E[m, 0] = _INF
            else:
                # best pair of m at time t: the 3×3 block, or after a crossing only the 3
                # newly adjacent cells, keeping the old best pair if its partner has not
                # collided since
                jo = I[m, 2]
                partial = d >= 0 and not (jo < 0 or P[jo, 5] != P[m, 6] or E[m, 0] < t)
                cx = I[m, 0]
                cy = I[m, 1]
                nsc = 0
                if partial:
                    best_t = E[m, 0]
                    best_j = jo
                    if d < 2:
                        kx = _wrap_cell(cx, 1 if d == 0 else -1, ncx, xper)
                        if kx >= 0:
                            for oy in range(-1, 2):
                                ky = _skip_cell(cy, oy, ncy, yper)
                                if ky >= 0:
                                    cells[nsc] = kx * ncy + ky
                                    nsc += 1
                    else:
                        ky = _wrap_cell(cy, 1 if d == 2 else -1, ncy, yper)
                        if ky >= 0:
                            for ox in range(-1, 2):
                                kx = _skip_cell(cx, ox, ncx, xper)
                                if kx >= 0:
                                    cells[nsc] = kx * ncy + ky
                                    nsc += 1
                else:
                    best_t = _INF
                    best_j = -1
                    for ox in range(-1, 2):
                        kx = _skip_cell(cx, ox, ncx, xper)
                        if kx < 0:
                            continue
                        for oy in range(-1, 2):
                            ky = _skip_cell(cy, oy, ncy, yper)
                            if ky >= 0:
                                cells[nsc] = kx * ncy + ky
                                nsc += 1
                dti = t - P[m, 4]
                xi = _streamed(P[m, 0], P[m, 2], dti)
                yi = _streamed(P[m, 1], P[m, 3], dti)
                vxi = P[m, 2]
                vyi = P[m, 3]
                for k in range(nsc):
                    jj = head[cells[k]]
                    while jj >= 0:
                        if jj != m:
                            dtj = t - P[jj, 4]
                            dx = _min_image(xi - _streamed(P[jj, 0], P[jj, 2], dtj), Lx, xper)
                            dy = _min_image(yi - _streamed(P[jj, 1], P[jj, 3], dtj), Ly, yper)
                            tij = _contact_time(dx, dy, vxi - P[jj, 2], vyi - P[jj, 3], sig2, t)
                            b = _before(tij, jj, best_t, best_j)
                            best_t = _pick(b, tij, best_t)
                            best_j = _pick(b, jj, best_j)
                        jj = nxt[jj]
                if not partial or best_j != jo:
                    E[m, 0] = best_t
                    I[m, 2] = best_j
                    P[m, 6] = P[best_j, 5] if best_j >= 0 else -1.0
            if mode == 0:
                tw, I[m, 3] = _wall_time(P[m, 0], P[m, 1], P[m, 2], P[m, 3], Lx, Ly, xper,
                                         yper, rw)
                E[m, 1] = P[m, 4] + tw
            if mode != 1:
                tc, I[m, 4] = _cross_time(P[m, 0], P[m, 1], P[m, 2], P[m, 3], I[m, 0],
                                          I[m, 1], ncx, ncy, ax, ay, Lx, Ly, xper, yper)
                E[m, 2] = P[m, 4] + tc
            key = min(E[m, 0], E[m, 1], E[m, 2])
            E[m, 3] = key
            if pending <= n:
                pass  # initial predictions: the queue is built once they are all known
            elif use_cq:
                _cq_move(m, key, Q, bhead, bnext, bprev, binof)
            else:
                # tournament tree: from m's leaf up, each node holds the earlier (key,
                # index) of its two children, so the root holds the next event; the
                # sibling is the only load per level (both share a 32-byte block), the
                # choice a select, and the climb stops where a node does not change
                k = leaves + m
                tree[k, 0] = key
                ck = key
                cj = float(m)
                while k > 1:
                    sk = tree[k ^ 1, 0]
                    sj = tree[k ^ 1, 1]
                    b = _before(sk, sj, ck, cj)
                    ck = _pick(b, sk, ck)
                    cj = _pick(b, sj, cj)
                    k >>= 1
                    if tree[k, 0] == ck and tree[k, 1] == cj:
                        break
                    tree[k, 0] = ck
                    tree[k, 1] = cj
            m = j if m == i else -1
        if stop:
            break
    for i in range(n):
        dt = t_end - P[i, 4]
        x = _streamed(P[i, 0], P[i, 2], dt)
        y = _streamed(P[i, 1], P[i, 3], dt)
        if xper:
            x -= Lx * math.floor(x / Lx)
            if x >= Lx:
                x -= Lx
        if yper:
            y -= Ly * math.floor(y / Ly)
            if y >= Ly:
                y -= Ly
        o = perm[i]
        pos[o, 0] = x
        pos[o, 1] = y
        vel[o, 0] = P[i, 2]
        vel[o, 1] = P[i, 3]
    return t_end
