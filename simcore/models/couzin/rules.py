"""The Couzin kernels: the zone rules of ``couzin2002`` and ``dewi``, the turn, the move and
the step loop (:func:`_run_steps`; serial and threaded twins)."""

from __future__ import annotations

import functools
import math
import os

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from simcore import _team, neighbors, rng


def _compiled_features() -> str:
    """The instruction-set features Numba compiles for ("+avx2,-avx512f,..."): the host's,
    unless NUMBA_CPU_NAME or NUMBA_CPU_FEATURES say otherwise (as Numba's codegen reads them)."""
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    if config.CPU_FEATURES is not None:
        return config.CPU_FEATURES
    return get_host_cpu_features()


@njit(cache=True, inline="always")
def _perpendicular(ux, uy, uz):
    """A unit vector perpendicular to the unit vector u."""
    if abs(ux) < 0.9:
        px, py, pz = 0.0, -uz, uy  # u × x̂
    else:
        px, py, pz = uz, 0.0, -ux  # u × ŷ
    nrm = math.sqrt(px * px + py * py + pz * pz)
    return px / nrm, py / nrm, pz / nrm


@njit(cache=True, inline="always")
def _turn_couzin(ux, uy, uz, dx, dy, dz, turn):
    """Rotate unit u toward unit d by at most ``cap`` radians (true rotation); ``turn`` is
    (cap, its :func:`turn_limits` thresholds)."""
    cap, cap_dot = turn
    c = ux * dx + uy * dy + uz * dz
    if c > 1.0:
        c = 1.0
    elif c < -1.0:
        c = -1.0
    # acos(c) <= cap, decided by the threshold (acos itself only if it is +inf: see
    # turn_limits); the angle is not needed further
    if c >= cap_dot or (cap_dot > 1.0 and math.acos(c) <= cap):
        return dx, dy, dz
    wx, wy, wz = dx - c * ux, dy - c * uy, dz - c * uz
    w = math.sqrt(wx * wx + wy * wy + wz * wz)
    if w < 1e-12:
        wx, wy, wz = _perpendicular(ux, uy, uz)
    else:
        wx, wy, wz = wx / w, wy / w, wz / w
    ca, sa = math.cos(cap), math.sin(cap)
    vx, vy, vz = ca * ux + sa * wx, ca * uy + sa * wy, ca * uz + sa * wz
    v = math.sqrt(vx * vx + vy * vy + vz * vz)
    return vx / v, vy / v, vz / v


def _float_masks() -> bool:
    """Whether the float32 pair loop combines its zone tests as 0/1 floats (kept or zeroed
    by compares, and differences: exact) rather than as booleans: where the CPU lacks
    AVX-512. There LLVM's
    256-bit code packs boolean vectors to 16 bits and back around every combination and
    merges them through the stack (1.8-2.0 -> 1.2-1.4 ns per pair in the cohesive school
    on a Zen 3 core, benchmarks/RESULTS.md); AVX-512's mask registers need no such trick.
    Fixed per CPU, as Numba's cache is. ``SIMCORE_TEST_COUZIN_MASKS`` = float | bool
    forces one for the tests (only with a NUMBA_CACHE_DIR of its own: the cache does not
    know this switch)."""
    forced = os.environ.get("SIMCORE_TEST_COUZIN_MASKS")
    if forced in ("float", "bool"):
        return forced == "float"
    return "+avx512f" not in _compiled_features().split(",")


_FLOAT_MASKS = _float_masks()
_M21 = (1 << 21) - 1
_M10 = (1 << 10) - 1
_LANES = 16  # the float32 loop runs whole multiples of this (>= the SIMD width)
PADDING = _LANES  # entries after the N agents in the float32 copies, keyed NO_CELL
NO_CELL = -1  # a key no cell packs to
# the threaded loop's counters: the team's (simcore._team), then where each chunk's units begin
_CHUNK_BASES = _team.COUNTERS


@njit(cache=True, inline="always")
def _pack(cx, cy, cz, narrow):
    """One integer per cell for the hash-collision filter: 21 bits per axis, or 10 bits
    (``narrow``: fits the int32 keys of the float32 loop, whose lanes then match the
    floats'). Aliases are >= 1024 cells apart along an axis, farther than any stencil
    reaches, so they are rejected by distance and never double-count visited cells."""
    if narrow:
        return ((cx & _M10) << 20) | ((cy & _M10) << 10) | (cz & _M10)
    return ((cx & _M21) << 42) | ((cy & _M21) << 21) | (cz & _M21)


@njit(cache=True)
def _gather_sorted(pos, head, cell_of, order, origin, xs, ys, zs, hxs, hys, hzs, keys,
                   new_cells):
    """Copy the state into cell order (structure of arrays) for contiguous pair loops,
    positions relative to ``origin`` (zero in float64; the group's centre in float32, so
    that single precision resolves distances however far the group has swum); the cell
    keys only if the cell lists are ``new_cells`` (rewriting unchanged keys would take
    their cache lines from the other threads' cores every step)."""
    _gather_range(0, order.shape[0], pos, head, cell_of, order, origin, xs, ys, zs, hxs, hys,
                  hzs, keys, new_cells)


@njit(cache=True, inline="always")
def _gather_range(lo, hi, pos, head, cell_of, order, origin, xs, ys, zs, hxs, hys, hzs, keys,
                  new_cells):
    """:func:`_gather_sorted` for the sorted positions lo..hi-1."""
    for t in range(lo, hi):
        j = order[t]
        xs[t], ys[t], zs[t] = pos[j, 0] - origin[0], pos[j, 1] - origin[1], pos[j, 2] - origin[2]
        hxs[t], hys[t], hzs[t] = head[j, 0], head[j, 1], head[j, 2]
        if new_cells:
            keys[t] = _pack(cell_of[j, 0], cell_of[j, 1], cell_of[j, 2], keys.itemsize == 4)


@njit(cache=True)
def _centre(pos, origin):
    """origin = the mean position (float64)."""
    n = pos.shape[0]
    for k in range(3):
        acc = 0.0
        for j in range(n):
            acc += pos[j, k]
        origin[k] = acc / n


@intrinsic
def _wide_vectors_for(typingctx, copies):
    """Ask LLVM to vectorise the function being compiled 512 bits wide when ``copies``
    (the sorted copies) are float32; emits no code, and does nothing for float64.

    LLVM prefers 256-bit vectors on Intel cores with AVX-512; the float32 pair loop is
    issue-bound, and 16 lanes on 2 ports beat 8 on 3 (0.97 against 1.30 ns per pair in
    the dewi box, benchmarks/RESULTS.md). The float64 loop keeps the 256-bit choice: its
    reassociated zone sums round by the loop's shape, and the default's seeded bits must
    not change. Where the CPU has no AVX-512 the attribute changes nothing."""
    wide = isinstance(copies, types.Array) and copies.dtype == types.float32

    def codegen(context, builder, signature, args):
        if wide:  # a string attribute, which llvmlite's list of known ones lacks
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(copies), codegen


@njit(cache=True, inline="always")
def _velocity(ux, uy, uz, rule, speed):
    """dewi: the velocity speed·u, its norm and the norm's inverse (zeros for couzin2002)."""
    vx = vy = vz = vn = inv_vn = 0.0
    if rule == 1:  # dewi: heading as vel/|vel| with vel = speed·u
        vx, vy, vz = ux * speed, uy * speed, uz * speed
        vn = math.sqrt(vx * vx + vy * vy + vz * vz)
        inv_vn = 1.0 / vn
    return vx, vy, vz, vn, inv_vn


@njit(cache=True, inline="always")
def _zone_sums(i, pos, head, box, ncell, reach, cell_of, bucket_start, origin, xs, ys, zs, hxs,
               hys, hzs, keys, rule, rr2, ro2, ra2, cos_fov, cos_blind, speed):
    """Agent i's zone sums from the old state (both rules), as float64: the repulsion,
    orientation and attraction vectors and the three neighbour counts.

    The pair loop is branch-free (zone and visibility tests are unpredictable per pair)
    and runs over the contiguous, cell-sorted copies ``xs ... keys`` so it vectorises.
    """
    _wide_vectors_for(xs)
    mask = bucket_start.shape[0] - 2
    # the pair loop runs in the dtype of the sorted copies (float64, or float32 for
    # precision "float32": twice the SIMD lanes, 512-bit vectors); the turn stays in float64
    real = xs.dtype.type
    narrow = keys.itemsize == 4  # the float32 loop
    zero = real(0.0)
    ux, uy, uz = head[i, 0], head[i, 1], head[i, 2]
    px, py, pz = real(pos[i, 0] - origin[0]), real(pos[i, 1] - origin[1]), \
        real(pos[i, 2] - origin[2])
    # periodic axes held as one cell need rounding per pair; others use cell image shifts
    bx = box[0] if ncell[0] == 1 else 0.0
    by = box[1] if ncell[1] == 1 else 0.0
    bz = box[2] if ncell[2] == 1 else 0.0
    ibx = 1.0 / bx if bx > 0.0 else 0.0
    iby = 1.0 / by if by > 0.0 else 0.0
    ibz = 1.0 / bz if bz > 0.0 else 0.0
    rounding = bx > 0.0 or by > 0.0 or bz > 0.0
    rbx, rby, rbz, ribx, riby, ribz = real(bx), real(by), real(bz), real(ibx), real(iby), \
        real(ibz)
    rr2_, ro2_, ra2_, cos_fov_ = real(rr2), real(ro2), real(ra2), real(cos_fov)
    cos_blind_ = real(cos_blind)
    blind_all = cos_blind < -2.0  # no blind zone
    fux, fuy, fuz = real(ux), real(uy), real(uz)
    drx = dry = drz = zero
    dox = doy = doz = zero
    dax = day = daz = zero
    nr = no = na = zero
    vx, vy, vz, _, inv_vn = _velocity(ux, uy, uz, rule, speed)
    fvx, fvy, fvz, finv_vn = real(vx), real(vy), real(vz), real(inv_vn)
    p = (px, py, pz)
    copies = (xs, ys, zs, hxs, hys, hzs, keys)
    wrap = (rbx, rby, rbz, ribx, riby, ribz)
    zones = (rr2_, ro2_, ra2_, cos_fov_, cos_blind_, blind_all)
    view = (fux, fuy, fuz, fvx, fvy, fvz, finv_vn)
    for ox in range(-reach[0], reach[0] + 1):
        cx, sx = neighbors.neighbor_cell(cell_of[i, 0], ox, ncell[0], box[0])
        fsx = real(sx)
        for oy in range(-reach[1], reach[1] + 1):
            cy, sy = neighbors.neighbor_cell(cell_of[i, 1], oy, ncell[1], box[1])
            fsy = real(sy)
            for oz in range(-reach[2], reach[2] + 1):
                cz, sz = neighbors.neighbor_cell(cell_of[i, 2], oz, ncell[2], box[2])
                fsz = real(sz)
                b = neighbors.cell_hash(cx, cy, cz, mask)
                tkey = keys.dtype.type(_pack(cx, cy, cz, narrow))
                lo = np.uint64(bucket_start[b])
                count = bucket_start[b + 1] - bucket_start[b]
                if narrow and count > 0:
                    # whole vectors only (no scalar tail): the entries read past the
                    # bucket belong to other cells or to the padding, whose keys differ
                    count = (count + _LANES - 1) & -_LANES
                at = (lo, count, tkey, fsx, fsy, fsz)
                sums = (drx, dry, drz, dox, doy, doz, dax, day, daz, nr, no, na)
                sums = _cell_pairs(at, p, copies, wrap, zones, view, rounding, rule, sums)
                drx, dry, drz, dox, doy, doz, dax, day, daz, nr, no, na = sums
    return (np.float64(drx), np.float64(dry), np.float64(drz), np.float64(dox),
            np.float64(doy), np.float64(doz), np.float64(dax), np.float64(day),
            np.float64(daz), np.float64(nr), np.float64(no), np.float64(na))


def _cell_pairs(at, p, copies, wrap, zones, view, rounding, rule, sums):
    """:func:`_zone_sums`' pairs with the ``count`` sorted entries from ``lo`` of one
    neighbour cell (``at`` = (lo, count, its key, its image shift x, y, z)): ``sums`` (the
    twelve zone sums) plus theirs, in the dtype of the sorted copies. Compiled code only
    (:func:`_cell_pairs_for` picks the loop by the copies' dtype while typing, so a kernel
    compiles only its own)."""
    raise NotImplementedError("compiled code only")


# fast-math (reassociation) and numpy's error model (no zero-division checks) let LLVM
# vectorise the branch-free pair loop; results stay deterministic for a given build.
_FAST = dict(fastmath={"reassoc", "contract", "arcp", "nsz"}, error_model="numpy")


# The float-test loops per rule and boundary kind are functions of their own, called once
# per neighbour cell, not inlined into the kernel: LLVM then optimises each once, in a
# small module (a first float32 run compiled for 50 s with the four inlined, 32 s so; the
# pair loop's speed is unchanged). They carry the kernel's flags (_FAST). Four named
# functions, not closures from a factory: Numba's on-disk cache indexes a function by its
# qualified name and line, which a factory's closures would share.
@njit(cache=True, **_FAST)
def _pair_sums_dewi_rounding(at, p, copies, wrap, zones, view, sums):
    return _pair_sums(at, p, copies, wrap, zones, view, True, 1, True, sums)


@njit(cache=True, **_FAST)
def _pair_sums_dewi_shifts(at, p, copies, wrap, zones, view, sums):
    return _pair_sums(at, p, copies, wrap, zones, view, False, 1, True, sums)


@njit(cache=True, **_FAST)
def _pair_sums_couzin_rounding(at, p, copies, wrap, zones, view, sums):
    return _pair_sums(at, p, copies, wrap, zones, view, True, 0, True, sums)


@njit(cache=True, **_FAST)
def _pair_sums_couzin_shifts(at, p, copies, wrap, zones, view, sums):
    return _pair_sums(at, p, copies, wrap, zones, view, False, 0, True, sums)


@overload(_cell_pairs, inline="always")
def _cell_pairs_for(at, p, copies, wrap, zones, view, rounding, rule, sums):
    if _FLOAT_MASKS and copies.types[6].dtype == types.int32:
        # float32 without AVX-512: one loop per rule and boundary kind (LLVM does not
        # unswitch a loop this large, and a branch left inside costs 256-bit code more than
        # a pair's arithmetic), zone tests as 0/1 floats (_float_masks)
        def per_kind(at, p, copies, wrap, zones, view, rounding, rule, sums):
            if rule == 1:
                if rounding:
                    return _pair_sums_dewi_rounding(at, p, copies, wrap, zones, view, sums)
                return _pair_sums_dewi_shifts(at, p, copies, wrap, zones, view, sums)
            if rounding:
                return _pair_sums_couzin_rounding(at, p, copies, wrap, zones, view, sums)
            return _pair_sums_couzin_shifts(at, p, copies, wrap, zones, view, sums)

        return per_kind

    def one_loop(at, p, copies, wrap, zones, view, rounding, rule, sums):
        return _pair_sums(at, p, copies, wrap, zones, view, rounding, rule, False, sums)

    return one_loop


@njit(cache=True, inline="always")
def _separation(t, at, p, copies, wrap, rounding):
    """The separation from the agent at ``p`` to sorted entry ``t`` (its cell's image shift
    in ``at``; the minimum image per pair if ``rounding``) and its square."""
    xs, ys, zs = copies[0], copies[1], copies[2]
    fsx, fsy, fsz = at[3], at[4], at[5]
    px, py, pz = p
    rbx, rby, rbz, ribx, riby, ribz = wrap
    half = xs.dtype.type(0.5)
    rx = xs[t] + fsx - px
    ry = ys[t] + fsy - py
    rz = zs[t] + fsz - pz
    if rounding:  # loop-invariant (a constant in the float32 loops without AVX-512)
        rx -= rbx * np.floor(rx * ribx + half)
        ry -= rby * np.floor(ry * riby + half)
        rz -= rbz * np.floor(rz * ribz + half)
    return rx, ry, rz, rx * rx + ry * ry + rz * rz


@njit(cache=True, inline="always")
def _add_pair(sums, t, copies, in_r, in_o, in_a, ex, ey, ez):
    """The twelve zone sums with entry ``t``'s pair added (zone weights 0 or 1, unit
    vector e toward it)."""
    drx, dry, drz, dox, doy, doz, dax, day, daz, nr, no, na = sums
    drx -= in_r * ex
    dry -= in_r * ey
    drz -= in_r * ez
    dox += in_o * copies[3][t]
    doy += in_o * copies[4][t]
    doz += in_o * copies[5][t]
    dax += in_a * ex
    day += in_a * ey
    daz += in_a * ez
    nr += in_r
    no += in_o
    na += in_a
    return drx, dry, drz, dox, doy, doz, dax, day, daz, nr, no, na


@njit(cache=True, inline="always")
def _pair_sums(at, p, copies, wrap, zones, view, rounding, rule, float_tests, sums):
    """:func:`_cell_pairs`' loop, its zone tests combined as 0/1 floats if ``float_tests``
    (see :func:`_float_masks`), as booleans otherwise."""
    lo, count = at[0], at[1]
    for u in range(count):
        t = lo + np.uint64(u)  # unsigned: no negative-index wraparound, so the
        # loads stay contiguous and the loop vectorises without gathers
        rx, ry, rz, d2 = _separation(t, at, p, copies, wrap, rounding)
        if float_tests:  # a constant: one of the two is compiled into the loop
            in_r, in_o, in_a, ex, ey, ez = _zones_float(t, rx, ry, rz, d2, at, copies, zones,
                                                        view, rule)
        else:
            in_r, in_o, in_a, ex, ey, ez = _zones_bool(t, rx, ry, rz, d2, at, copies, zones,
                                                       view, rule)
        sums = _add_pair(sums, t, copies, in_r, in_o, in_a, ex, ey, ez)
    return sums


# _zones_bool, _turn and _dewi_turn are not inlined by Numba ("inline='always'" copies a
# callee's IR per call site, most of a Couzin loop's compile time) but by LLVM: the same
# vector code and the same bits, all four loops compiled ~29 % faster (benchmarks/
# RESULTS.md, session 39). They carry the kernel's flags (_FAST), which inlined they took
# from it: without them float64 bits change. _zones_float stays inlined (its float32 loop
# ran ~9 % slower without).
@njit(cache=True, **_FAST)
def _zones_bool(t, rx, ry, rz, d2, at, copies, zones, view, rule):
    """Sorted entry ``t``'s zone weights (repulsion, orientation, attraction: 0 or 1) and
    the unit vector toward it, the tests combined as booleans."""
    rr2_, ro2_, ra2_, cos_fov_, cos_blind_, blind_all = zones
    fux, fuy, fuz, fvx, fvy, fvz, finv_vn = view
    real = copies[0].dtype.type
    one, zero, tiny2 = real(1.0), real(0.0), real(1e-20)
    # anchor: skip pairs closer than 1e-10 (this also skips the agent itself)
    ok = (copies[6][t] == at[2]) & (d2 < ra2_) & (d2 >= tiny2)
    inv = one / math.sqrt(d2 if ok else one)
    ex, ey, ez = rx * inv, ry * inv, rz * inv
    near = d2 < rr2_
    if rule == 1:
        cos_view = (fvx * ex + fvy * ey + fvz * ez) * finv_vn
        seen = ok & (blind_all | (cos_view > cos_blind_))
        in_r = one if seen & near else zero
        in_o = one if seen & (d2 >= rr2_) & (d2 < ro2_) else zero
        in_a = one if seen & (d2 >= ro2_) else zero
    else:
        seen = ok & (d2 >= rr2_) & (fux * ex + fuy * ey + fuz * ez >= cos_fov_)
        in_r = one if ok & near else zero
        in_o = one if seen & (d2 < ro2_) else zero
        in_a = one if seen & (d2 >= ro2_) else zero
    return in_r, in_o, in_a, ex, ey, ez


@njit(cache=True, inline="always")
def _zones_float(t, rx, ry, rz, d2, at, copies, zones, view, rule):
    """:func:`_zones_bool` with the tests as 0/1 floats, each kept or zeroed by one compare
    and combined by differences: the same weights exactly (see :func:`_float_masks`), but
    for the couzin2002 field of view, tested as u·r >= cos·|r| (|r| = d2·inv) rather
    than u·(r·inv) >= cos: the same test, rounded differently.

    A float kept by a compare compiles to an AND, which any of Zen 3's four FP pipes
    runs; a product of two 0/1 floats needed one of the two multiply pipes, which the
    distances, the unit vectors and the sums already keep busy (llvm-mca). Both changes
    together: the cohesive school 1.17-1.19 -> 1.03-1.07 ns per pair, the dewi box
    1.82-1.85 -> 1.73-1.75 (Zen 3 VM, benchmarks/RESULTS.md, session 34)."""
    rr2_, ro2_, ra2_, cos_fov_, cos_blind_, _ = zones
    fux, fuy, fuz, fvx, fvy, fvz, finv_vn = view
    real = copies[0].dtype.type
    one, zero, tiny2 = real(1.0), real(0.0), real(1e-20)
    okf = one if copies[6][t] == at[2] else zero
    okf = okf if d2 < ra2_ else zero
    okf = okf if d2 >= tiny2 else zero
    inv = one / math.sqrt(max(d2, tiny2))  # finite where okf is 0 (the agent itself)
    ex, ey, ez = rx * inv, ry * inv, rz * inv
    if rule == 1:
        cos_view = (fvx * ex + fvy * ey + fvz * ez) * finv_vn
        # no blind zone: cos_blind_ < -2, so the test holds for every pair
        seenf = okf if cos_view > cos_blind_ else zero
        in_r = seenf if d2 < rr2_ else zero
        seen_o = seenf if d2 < ro2_ else zero
        return in_r, seen_o - (seen_o if d2 < rr2_ else zero), seenf - seen_o, ex, ey, ez
    in_r = okf if d2 < rr2_ else zero
    # u·r is ready with d2: the test need not wait for the unit vector (a shorter chain)
    seenf = (okf - in_r) if fux * rx + fuy * ry + fuz * rz >= (cos_fov_ * d2) * inv else zero
    in_o = seenf if d2 < ro2_ else zero
    return in_r, in_o, seenf - in_o, ex, ey, ez


@njit(cache=True, **_FAST)
def _turn(i, ux, uy, uz, vx, vy, vz, vn, drx, dry, drz, dox, doy, doz, dax, day, daz, nr,
          no, na, rule, w_o, turn, noise, key, step):
    """New heading from the zone sums (float64), by either rule."""
    if rule == 1:
        return _dewi_turn(i, ux, uy, uz, vx, vy, vz, vn, drx, dry, drz, dox, doy, doz,
                          dax, day, daz, nr, no, na, w_o, turn, noise, key, step)
    # couzin2002: desired direction
    if nr > 0:
        n2 = math.sqrt(drx * drx + dry * dry + drz * drz)
        if n2 < 1e-12:
            dx, dy, dz = ux, uy, uz
        else:
            dx, dy, dz = drx / n2, dry / n2, drz / n2
    elif no > 0 or na > 0:
        dx = dy = dz = 0.0
        if no > 0:
            ox_, oy_, oz_ = dox + ux, doy + uy, doz + uz
            n2 = math.sqrt(ox_ * ox_ + oy_ * oy_ + oz_ * oz_)
            if n2 > 1e-12:
                dx, dy, dz = ox_ / n2, oy_ / n2, oz_ / n2
        if na > 0:
            n2 = math.sqrt(dax * dax + day * day + daz * daz)
            if n2 > 1e-12:
                if no > 0:
                    dx = 0.5 * (dx + dax / n2)
                    dy = 0.5 * (dy + day / n2)
                    dz = 0.5 * (dz + daz / n2)
                else:
                    dx, dy, dz = dax / n2, day / n2, daz / n2
        n2 = math.sqrt(dx * dx + dy * dy + dz * dz)
        if n2 < 1e-12:
            dx, dy, dz = ux, uy, uz
        else:
            dx, dy, dz = dx / n2, dy / n2, dz / n2
    else:
        dx, dy, dz = ux, uy, uz
    if noise > 0.0:
        base = rng.stream_base(key, step, i)
        g0, g1 = rng.normal_pair(base, 0)
        g2, _ = rng.normal_pair(base, 2)
        g0, g1, g2 = g0 * noise, g1 * noise, g2 * noise
        gd = g0 * dx + g1 * dy + g2 * dz
        tx, ty, tz = g0 - gd * dx, g1 - gd * dy, g2 - gd * dz
        a = math.sqrt(tx * tx + ty * ty + tz * tz)
        if a > 0.0:
            ca, sa = math.cos(a), math.sin(a) / a
            dx, dy, dz = ca * dx + sa * tx, ca * dy + sa * ty, ca * dz + sa * tz
            n2 = math.sqrt(dx * dx + dy * dy + dz * dz)
            dx, dy, dz = dx / n2, dy / n2, dz / n2
    return _turn_couzin(ux, uy, uz, dx, dy, dz, turn)


@njit(cache=True, **_FAST)
def _dewi_turn(i, ux, uy, uz, vx, vy, vz, vn, drx, dry, drz, dox, doy, doz, dax, day, daz,
               nr, no, na, w_o, turn, noise, key, step):
    """dewi-kadita's _update_velocities_numba tail and _rotate_toward, op for op."""
    cx, cy, cz = vx / vn, vy / vn, vz / vn  # current_dir
    if nr > 0:
        tx, ty, tz = drx, dry, drz
    elif no > 0 or na > 0:
        tx = ty = tz = 0.0
        if no > 0:
            tx += dox * w_o
            ty += doy * w_o
            tz += doz * w_o
        if na > 0:
            tx += dax
            ty += day
            tz += daz
    else:
        tx, ty, tz = cx, cy, cz
    if nr > 0 or no > 0 or na > 0:  # _normalize: zero below 1e-10
        nrm = math.sqrt(tx * tx + ty * ty + tz * tz)
        if nrm < 1e-10:
            tx = ty = tz = 0.0
        else:
            tx, ty, tz = tx / nrm, ty / nrm, tz / nrm
    tn = math.sqrt(tx * tx + ty * ty + tz * tz)
    if tn < 1e-10:
        tx, ty, tz = cx, cy, cz
    else:
        tx, ty, tz = tx / tn, ty / tn, tz / tn
    dot = cx * tx + cy * ty + cz * tz
    dot = max(-1.0, min(1.0, dot))
    cap = turn[0]  # (the angle blends the turn: its acos stays)
    angle = math.acos(dot)
    if angle < 1e-10:
        nx, ny, nz = cx, cy, cz
    elif angle <= cap:
        nx, ny, nz = tx, ty, tz
    else:
        t = cap / angle
        nx, ny, nz = cx * (1 - t) + tx * t, cy * (1 - t) + ty * t, cz * (1 - t) + tz * t
        nrm = math.sqrt(nx * nx + ny * ny + nz * nz)
        if nrm > 1e-10:
            nx, ny, nz = nx / nrm, ny / nrm, nz / nrm
        else:
            nx, ny, nz = cx, cy, cz
    if noise > 0:
        base = rng.stream_base(key, step, i)
        g0, g1 = rng.normal_pair(base, 0)
        g2, _ = rng.normal_pair(base, 2)
        nx, ny, nz = nx + g0 * noise, ny + g1 * noise, nz + g2 * noise
        nrm = math.sqrt(nx * nx + ny * ny + nz * nz)
        if nrm > 1e-10:
            nx, ny, nz = nx / nrm, ny / nrm, nz / nrm
    return nx, ny, nz


@njit(cache=True, **_FAST)
def _acos_within(d, limit):
    """acos(d) <= limit, with acos compiled as in the kernels."""
    return math.acos(d) <= limit


def _smallest_within(limit: float) -> float:
    """The smallest double d in [-1, 1] with acos(d) <= ``limit``; +inf if there is none,
    or if acos does not flip from above to within exactly once in the 64 doubles either
    side of it (then the turn calls acos as before)."""
    if not _acos_within(1.0, limit):
        return math.inf
    if _acos_within(-1.0, limit):
        return -1.0
    lo, hi = -1.0, 1.0  # acos(lo) > limit >= acos(hi): bisect to adjacent doubles
    while math.nextafter(lo, hi) != hi:
        mid = lo + (hi - lo) / 2
        if mid in (lo, hi):
            mid = math.nextafter(lo, hi)
        if _acos_within(mid, limit):
            hi = mid
        else:
            lo = mid
    below, above = lo, hi
    for _ in range(64):
        if _acos_within(below, limit) or not _acos_within(above, limit):
            return math.inf
        below, above = math.nextafter(below, -2.0), min(1.0, math.nextafter(above, 2.0))
    return hi


@functools.lru_cache(maxsize=64)
def turn_limits(cap: float) -> tuple[float, float]:
    """(cap, cap_dot) for the turns: the cap in radians and the smallest cosine d with
    acos(d) <= cap. In the couzin2002 turn ``c >= cap_dot`` then decides exactly as
    ``acos(c) <= cap`` did (acos is monotonic, checked around the threshold), without the
    acos (~20 ns an agent). The dewi turn needs the angle itself and keeps its acos."""
    return float(cap), _smallest_within(float(cap))


@njit(cache=True, **_FAST)
def _decide_range(lo, hi, pos, head, sums, box, ncell, reach, cell_of, bucket_start, order,
                  origin, xs, ys, zs, hxs, hys, hzs, keys, rule, rr2, ro2, ra2, cos_fov, cos_blind,
                  w_o, turn, noise, speed, key, step):
    """New headings of the agents at sorted positions lo..hi-1, written in place (a
    decision reads its own agent's heading and the sorted copies only).

    Two passes: every agent's zone sums (into ``sums``, float64, one row per sorted
    position), then every agent's turn. The turns' scalar chains (acos, the noise's log
    and sincos, normalisations) are mostly latency: one after another, with nothing
    between, the CPU overlaps consecutive agents' chains."""
    for t in range(lo, hi):
        i = order[t]
        (sums[t, 0], sums[t, 1], sums[t, 2], sums[t, 3], sums[t, 4], sums[t, 5], sums[t, 6],
         sums[t, 7], sums[t, 8], sums[t, 9], sums[t, 10], sums[t, 11]) = _zone_sums(
            i, pos, head, box, ncell, reach, cell_of, bucket_start, origin, xs, ys, zs, hxs,
            hys, hzs, keys, rule, rr2, ro2, ra2, cos_fov, cos_blind, speed)
    for t in range(lo, hi):
        i = order[t]
        ux, uy, uz = head[i, 0], head[i, 1], head[i, 2]
        vx, vy, vz, vn, _ = _velocity(ux, uy, uz, rule, speed)
        hx, hy, hz = _turn(i, ux, uy, uz, vx, vy, vz, vn, sums[t, 0], sums[t, 1], sums[t, 2],
                           sums[t, 3], sums[t, 4], sums[t, 5], sums[t, 6], sums[t, 7],
                           sums[t, 8], sums[t, 9], sums[t, 10], sums[t, 11], rule, w_o, turn,
                           noise, key, step)
        head[i, 0], head[i, 1], head[i, 2] = hx, hy, hz


@njit(cache=True, inline="always")
def _python_mod(x, L):
    """``x % L`` (Python's float modulo, as dewi-kadita wraps positions) for L > 0, without
    its fmod call (~9 ns) in the common cases: a step moves an agent by less than L, so x
    lies in [-L, 2L). There the results are the same bits: x - L is exact for L <= x <= 2L
    (Sterbenz), x + L is the one rounding Python's x % L makes for -L < x < 0, and a zero
    comes out as +0.0, as from Python."""
    if 0.0 < x < L:
        return x
    if L <= x < 2.0 * L:
        return x - L
    if -L <= x < 0.0:
        return x + L
    return x % L


@njit(cache=True)
def _move(pos, head, speed, dt, rule, boundary, L):
    for i in range(pos.shape[0]):
        _move_one(i, pos, head, speed, dt, rule, boundary, L)


@njit(cache=True, inline="always")
def _move_one(i, pos, head, speed, dt, rule, boundary, L):
    """Move agent i one step along its (new) heading; walls reflect it."""
    for k in range(3):
        if rule == 1:
            x = pos[i, k] + (head[i, k] * speed) * dt
            pos[i, k] = _python_mod(x, L)
        else:
            x = pos[i, k] + speed * dt * head[i, k]
            if boundary == 1:
                x -= L * math.floor(x / L)
                if x >= L:  # round-off can land exactly on L
                    x -= L
            elif boundary == 2:
                if x < 0.0:
                    x = -x
                    head[i, k] = -head[i, k]
                elif x > L:
                    x = 2.0 * L - x
                    head[i, k] = -head[i, k]
            pos[i, k] = x


@njit(cache=True)
def bounding_box_plan(pos, r_a, box, side, ncell, reach, own_extent):
    """The cell plan for agents in open space or between walls (``box`` all zeros) from
    their bounding box, into side/ncell/reach.

    ``own_extent`` (the float32 kernel's plan): :func:`neighbors.extent_plan_into`, the
    school filling only its bounding box, all pairs among the choices (a school narrower
    than a stencil finds every agent in it, and one cell per axis skips the cell visits:
    1.6-3x faster per step for compact schools). Otherwise (float64): :func:`neighbors.
    auto_plan_into` at the number density of the box, each side at least r_a, whose
    neighbour order the float64 runs' seeded bits follow."""
    lo_x = hi_x = pos[0, 0]
    lo_y = hi_y = pos[0, 1]
    lo_z = hi_z = pos[0, 2]
    for i in range(1, pos.shape[0]):
        lo_x, hi_x = min(lo_x, pos[i, 0]), max(hi_x, pos[i, 0])
        lo_y, hi_y = min(lo_y, pos[i, 1]), max(hi_y, pos[i, 1])
        lo_z, hi_z = min(lo_z, pos[i, 2]), max(hi_z, pos[i, 2])
    n = pos.shape[0]
    if own_extent:
        neighbors.extent_plan_into(r_a, n, hi_x - lo_x, hi_y - lo_y, hi_z - lo_z, 3,
                                   neighbors.AUTO_MAX_REACH, neighbors.AUTO_CELL_COST, side,
                                   ncell, reach)
        return
    volume = max(hi_x - lo_x, r_a) * max(hi_y - lo_y, r_a) * max(hi_z - lo_z, r_a)
    neighbors.auto_plan_into(box, r_a, n / volume, 3, neighbors.AUTO_MAX_REACH,
                             neighbors.AUTO_CELL_COST, side, ncell, reach)


@njit(cache=True)
def _keep(c, pos, head, kept_pos, kept_head):
    """The state after chunk ``c`` into ``kept_pos[c]``/``kept_head[c]`` (the driver's
    frame). Element loops, not ``kept_pos[c, :, :] = pos``: a slice assignment compiles
    its shape check's error message (Numba's string formatting), which added ~6 s, a
    quarter, to the Couzin kernels' first compilation (benchmarks/RESULTS.md)."""
    for a in range(pos.shape[0]):
        for x in range(pos.shape[1]):
            kept_pos[c, a, x] = pos[a, x]
            kept_head[c, a, x] = head[a, x]


@njit(cache=True, inline="always")
def _chunk_shape(ncell, recentre, blocks):
    """(one cell per axis, one phase per step, units per step) of a chunk's plan for the
    team: a plan of one cell per axis away from open space keeps its lists and copies for
    the chunk (``blocks`` units a step); other plans rebuild them every step (1 + 2 blocks)."""
    one_cell = ncell[0] == 1 and ncell[1] == 1 and ncell[2] == 1
    fused = one_cell and not recentre
    return one_cell, fused, blocks if fused else 1 + 2 * blocks


@njit(cache=True)
def _team_member(counters, blocks, pos, head, sums, box, side, ncell, reach, cell_of, bucket_of,
                 bucket_start, order, origin, copies, keys, rule, boundary, L, rr2, ro2, ra2,
                 cos_fov, cos_blind, w_o, turn, noise, speed, dt, key, step0, n_steps, n_chunks,
                 replan, r_a, kept_pos, kept_head):
    """One thread's share of :func:`_team_chunks` (simcore._team): claim units, run them.

    Chunk c's units are numbered from ``counters[_CHUNK_BASES + c]`` on: first its
    prologue (one unit: the chunk's cell plan where ``replan``; for plans of one cell per
    axis away from open space, the cell lists and sorted copies that hold for the chunk),
    which writes where the next chunk's units begin; then its steps; last its epilogue
    (one unit: the state after the chunk into ``kept_pos[c]``/``kept_head[c]``). Each step
    is one phase of ``blocks`` units (decide, move and copy a block of agents into the
    other row of ``copies``) after a one-cell prologue; otherwise three phases: the cell
    lists (one unit), the copies (``blocks`` units), decide and move. A unit waits for
    every unit numbered before its phase; the plan arrays change only in a prologue, when
    no other unit is held."""
    n = pos.shape[0]
    recentre = copies.itemsize < 8 and boundary == 0
    c = 0  # the chunk of this member's last unit (claims only grow)
    while True:
        u = _team.claim(counters)
        while c < n_chunks:  # find u's chunk
            base = counters[_CHUNK_BASES + c]  # written (or zeroed) before its prologue is done
            if u == base:  # the prologue
                _team.wait_done(counters, base)
                if replan:
                    bounding_box_plan(pos, r_a, box, side, ncell, reach, copies.itemsize < 8)
                one_cell, fused, per_step = _chunk_shape(ncell, recentre, blocks)
                if fused and n_steps > 0:
                    neighbors.build(pos, side, ncell, cell_of, bucket_of, bucket_start, order)
                    _gather_sorted(pos, head, cell_of, order, origin, copies[0, 0],
                                   copies[0, 1], copies[0, 2], copies[0, 3], copies[0, 4],
                                   copies[0, 5], keys, True)
                counters[_CHUNK_BASES + c + 1] = base + 2 + n_steps * per_step
                break
            _team.wait_done(counters, base + 1)  # the prologue: the plan, the next base
            end = counters[_CHUNK_BASES + c + 1]
            if u >= end:
                c += 1
                continue
            if u == end - 1:  # the epilogue
                _team.wait_done(counters, u)
                if c < kept_pos.shape[0]:
                    _keep(c, pos, head, kept_pos, kept_head)
                break
            one_cell, fused, per_step = _chunk_shape(ncell, recentre, blocks)
            v = u - base - 1
            s = v // per_step
            r = v - s * per_step
            first = base + 1 + s * per_step  # the step's first unit
            row = s % 2 if fused else 0
            if not fused and r == 0:
                _team.wait_done(counters, first)
                if s == 0 or not one_cell:
                    neighbors.build(pos, side, ncell, cell_of, bucket_of, bucket_start, order)
                if recentre:
                    _centre(pos, origin)
            elif not fused and r <= blocks:
                _team.wait_done(counters, first + 1)
                lo, hi = n * (r - 1) // blocks, n * r // blocks
                _gather_range(lo, hi, pos, head, cell_of, order, origin, copies[0, 0],
                              copies[0, 1], copies[0, 2], copies[0, 3], copies[0, 4],
                              copies[0, 5], keys, s == 0 or not one_cell)
            else:
                b = r if fused else r - 1 - blocks
                _team.wait_done(counters, first if fused else first + 1 + blocks)
                lo, hi = n * b // blocks, n * (b + 1) // blocks
                _decide_range(lo, hi, pos, head, sums, box, ncell, reach, cell_of, bucket_start,
                              order, origin, copies[row, 0], copies[row, 1], copies[row, 2],
                              copies[row, 3], copies[row, 4], copies[row, 5], keys, rule, rr2,
                              ro2, ra2, cos_fov, cos_blind, w_o, turn, noise, speed, key,
                              step0 + c * n_steps + s)
                for t in range(lo, hi):
                    _move_one(order[t], pos, head, speed, dt, rule, boundary, L)
                if fused:  # the next step's copies of these agents (same cells, same keys)
                    nxt = 1 - row
                    _gather_range(lo, hi, pos, head, cell_of, order, origin, copies[nxt, 0],
                                  copies[nxt, 1], copies[nxt, 2], copies[nxt, 3],
                                  copies[nxt, 4], copies[nxt, 5], keys, False)
            break
        if c >= n_chunks:  # past the last chunk's epilogue: every unit is claimed
            return
        _team.mark_done(counters)


@njit(cache=True, parallel=True)
def _team_chunks(workers, counters, blocks, pos, head, sums, box, side, ncell, reach, cell_of,
                 bucket_of, bucket_start, order, origin, copies, keys, rule, boundary, L, rr2,
                 ro2, ra2, cos_fov, cos_blind, w_o, turn, noise, speed, dt, key, step0, n_steps,
                 n_chunks, replan, r_a, kept_pos, kept_head):
    """``n_chunks`` chunks of ``n_steps`` steps on ``workers`` threads in one parallel
    region (simcore._team; ``counters`` zeroed, with room for ``n_chunks + 1`` chunk
    bases after the team's own counters)."""
    for _ in prange(workers):
        _team_member(counters, blocks, pos, head, sums, box, side, ncell, reach, cell_of,
                     bucket_of, bucket_start, order, origin, copies, keys, rule, boundary, L,
                     rr2, ro2, ra2, cos_fov, cos_blind, w_o, turn, noise, speed, dt, key, step0,
                     n_steps, n_chunks, replan, r_a, kept_pos, kept_head)


@functools.cache
def run_steps_for(parallel: bool):
    """The step loop, threaded (``parallel``) or serial, compiled on its first call.

    ``parallel`` is a constant of the loop (a closure cell, part of Numba's cache key):
    the branch on it is pruned before typing, so a run compiles only its own path. The
    threaded path runs all ``n_chunks`` chunks in one parallel region (:func:`_team_chunks`:
    one region per call, not per chunk: a region's start and end wait for every thread, which
    costs a scheduler tick each time one of them has lost its core to another process), the
    serial one step by step; both compute every agent's step with the same operations,
    so their trajectories are the same bits. ``workers``: the threaded path's thread count
    (Numba's, read by the caller: read in compiled code it would make the loop uncachable).

    One call runs ``n_chunks`` chunks of ``n_steps`` steps (one frame interval each) and
    copies the state after chunk c into ``kept_pos[c]``/``kept_head[c]`` for c below their
    length (the driver's frames; the caller copies the last chunk's, ``pos``/``head``);
    ``replan`` plans each chunk's cells from the agents' bounding box (open space and
    reflecting walls, :func:`bounding_box_plan`), else ``box``/``side``/``ncell``/``reach``
    hold for every chunk."""

    @njit(cache=True, nogil=True)  # nogil: other Python threads run meanwhile
    def _run_steps(pos, head, sums, box, side, ncell, reach, cell_of, bucket_of,
                   bucket_start, order, origin, copies, keys, counters, rule, boundary, L, rr2,
                   ro2, ra2, cos_fov, cos_blind, w_o, turn, noise, speed, dt, key, step0,
                   n_steps, workers, n_chunks, replan, r_a, kept_pos, kept_head):
        n = pos.shape[0]
        recentre = copies.itemsize < 8 and boundary == 0  # single precision in open space
        xs, ys, zs, hxs, hys, hzs = copies[0, 0], copies[0, 1], copies[0, 2], copies[0, 3], \
            copies[0, 4], copies[0, 5]
        if parallel:
            for k in range(_CHUNK_BASES + 1):
                counters[k] = 0
            _team_chunks(workers, counters, workers, pos, head, sums, box, side, ncell, reach,
                         cell_of, bucket_of, bucket_start, order, origin, copies, keys, rule,
                         boundary, L, rr2, ro2, ra2, cos_fov, cos_blind, w_o, turn, noise, speed,
                         dt, key, step0, n_steps, n_chunks, replan, r_a, kept_pos, kept_head)
            return
        for c in range(n_chunks):
            step = step0 + c * n_steps
            if replan:  # the plan of these agents' bounding box, as cell_plan makes it
                bounding_box_plan(pos, r_a, box, side, ncell, reach, copies.itemsize < 8)
            # a plan of one cell per axis puts every agent in that cell, in index order,
            # whatever the positions: the lists built at a chunk's first step hold for all
            # of its steps
            one_cell = ncell[0] == 1 and ncell[1] == 1 and ncell[2] == 1
            for s in range(n_steps):
                if s == 0 or not one_cell:
                    neighbors.build(pos, side, ncell, cell_of, bucket_of, bucket_start, order)
                if recentre:
                    _centre(pos, origin)
                _gather_sorted(pos, head, cell_of, order, origin, xs, ys, zs, hxs, hys, hzs,
                               keys, s == 0 or not one_cell)
                _decide_range(0, n, pos, head, sums, box, ncell, reach, cell_of,
                              bucket_start, order, origin, xs, ys, zs, hxs, hys, hzs, keys,
                              rule, rr2, ro2, ra2, cos_fov, cos_blind, w_o, turn, noise,
                              speed, key, step + s)
                _move(pos, head, speed, dt, rule, boundary, L)
            if c < kept_pos.shape[0]:  # the state after this chunk, for its frame
                _keep(c, pos, head, kept_pos, kept_head)

    return _run_steps
