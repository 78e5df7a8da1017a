"""Cell lists against brute force, in periodic, open and flattened geometries."""

from __future__ import annotations

import numpy as np
import pytest

from simcore import neighbors


def brute_counts(pos, box, cutoff):
    d = pos[None, :, :] - pos[:, None, :]
    for k in range(3):
        if box[k] > 0:
            d[..., k] -= box[k] * np.round(d[..., k] / box[k])
    r2 = (d ** 2).sum(-1)
    np.fill_diagonal(r2, np.inf)
    return (r2 < cutoff ** 2).sum(1)


def cell_counts(pos, box, cutoff, reach=1, ndim=3):
    b, side, ncell, reach_axis = neighbors.plan(box, cutoff, reach=reach, ndim=ndim)
    work = neighbors.allocate(len(pos))
    neighbors.build(pos, side, ncell, work["cell_of"], work["bucket_of"], work["bucket_start"],
                    work["order"])
    counts = np.zeros(len(pos), dtype=np.int64)
    neighbors.count_within(pos, b, ncell, reach_axis, work["cell_of"], work["bucket_start"],
                           work["order"], cutoff, counts)
    return counts


@pytest.mark.parametrize("reach", [1, 2])
@pytest.mark.parametrize("L,cutoff", [(20.0, 2.5), (20.0, 7.9), (20.0, 12.0), (9.0, 3.0)])
def test_periodic_cells_equal_brute_force(L, cutoff, reach):
    rng = np.random.default_rng(1)
    pos = rng.random((400, 3)) * L
    pos[:20] = L * (1 - 1e-15)  # particles on the upper edge of the box
    pos[20:40, 0] = 0.0
    box = np.array([L, L, L])
    np.testing.assert_array_equal(cell_counts(pos, box, cutoff, reach), brute_counts(pos, box, cutoff))


@pytest.mark.parametrize("reach", [1, 2])
def test_open_space_cells_equal_brute_force(reach):
    rng = np.random.default_rng(2)
    pos = np.concatenate([rng.normal(0, 3, (300, 3)),  # a school
                          rng.normal(0, 1, (20, 3)) + [1e4, -3e5, 2e6],  # far stragglers
                          -rng.random((30, 3)) * 5])  # negative cell coordinates
    box = np.zeros(3)
    np.testing.assert_array_equal(cell_counts(pos, box, 2.0, reach), brute_counts(pos, box, 2.0))


def test_mixed_and_flat_axes():
    rng = np.random.default_rng(3)
    pos = rng.random((300, 3)) * [30.0, 30.0, 0.0]
    box = np.array([30.0, 0.0, 0.0])  # periodic x, open y, flat z
    np.testing.assert_array_equal(cell_counts(pos, box, 2.0, ndim=2), brute_counts(pos, box, 2.0))


def test_plan_falls_back_to_one_cell_when_box_is_short():
    box, side, ncell, reach = neighbors.plan([10.0, 10.0, 10.0], cutoff=4.0, reach=1)
    assert list(ncell) == [1, 1, 1] and list(reach) == [0, 0, 0]
    box, side, ncell, reach = neighbors.plan([12.0, 12.0, 12.0], cutoff=4.0, reach=1)
    assert list(ncell) == [3, 3, 3] and np.all(side >= 4.0)


@pytest.mark.parametrize("nc_side", [3, 4, 9])
def test_verlet2d_lists_are_complete_sorted_and_report_overflow(nc_side):
    """build_verlet2d: each row holds exactly the others within r_list (minimum image),
    sorted by index; a too-short row reports a size above the capacity."""
    rng = np.random.default_rng(nc_side)
    n, r_list = 400, 1.3
    L = nc_side * r_list * 1.05
    pos = np.zeros((n, 3))
    pos[:, :2] = rng.random((n, 2)) * L
    nc = neighbors.grid2d_shape(L, r_list)
    work = neighbors.allocate(n)
    xs, ys = np.empty(n), np.empty(n)
    ref = np.zeros((n, 2))
    counts = np.zeros(n, dtype=np.int64)
    d = pos[:, None, :2] - pos[None, :, :2]
    d -= L * np.round(d / L)
    close = (d ** 2).sum(-1) < r_list ** 2
    np.fill_diagonal(close, False)
    want = close.sum(1)
    start = np.zeros(nc * nc + 1, dtype=np.int64)
    nb = np.zeros((n, want.max() + 1), dtype=np.int32)  # + 1: the scratch column
    largest = neighbors.build_verlet2d(pos, L, nc, L / nc, start, work["order"], xs, ys,
                                       r_list, nb, counts, ref)
    assert largest == want.max()
    assert (counts == want).all()
    for i in range(n):
        assert nb[i, :counts[i]].tolist() == np.flatnonzero(close[i]).tolist()
    assert (ref == pos[:, :2]).all()
    short = np.zeros((n, want.max()), dtype=np.int32)  # one column short
    largest = neighbors.build_verlet2d(pos, L, nc, L / nc, start, work["order"], xs, ys,
                                       r_list, short, counts, ref)
    assert largest > short.shape[1]


def _reference_auto_plan(box, cutoff, density, ndim=3, max_reach=4, cell_cost=25.0):
    """auto_plan's documented choice, evaluated in plain Python: work per particle =
    density x stencil volume (clipped to periodic sides) + cell_cost x visited cells, the
    smallest reach unless a larger one is 3 % better."""
    best, best_work = None, float("inf")
    for reach in range(1, max_reach + 1):
        side, ncell, reach_axis = [cutoff / reach] * 3, [0] * 3, [reach] * 3
        for k in range(3):
            if k >= ndim:
                side[k], ncell[k], reach_axis[k] = 1.0, 1, 0
            elif box[k] > 0:
                nc = int(np.floor(box[k] / (cutoff / reach)))
                if nc < 2 * reach + 1:
                    side[k], ncell[k], reach_axis[k] = box[k], 1, 0
                else:
                    side[k], ncell[k] = box[k] / nc, nc
        extent, cells = 1.0, 1
        for k in range(ndim):
            span = (2 * reach_axis[k] + 1) * side[k]
            extent *= min(box[k], span) if box[k] > 0 else span
            cells *= 2 * reach_axis[k] + 1
        work = density * extent + cell_cost * cells
        if work < best_work * 0.97:
            best, best_work = (side, ncell, reach_axis), work
    return best


@pytest.mark.parametrize("box", [[0.0, 0.0, 0.0], [35.0, 35.0, 35.0], [200.0, 200.0, 0.0],
                                 [30.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
def test_auto_plan_is_the_documented_cost_minimum(box):
    """The compiled auto_plan picks, for densities from sparse swarms to packed schools (reach
    1 to 4, and near every switch between them),
    exactly the plan of the cost model written out in Python (sides bit for bit)."""
    for ndim in (2, 3):
        for density in np.geomspace(1e-5, 1e3, 800):
            got = neighbors.auto_plan(box, 2.5, density=density, ndim=ndim)
            side, ncell, reach = _reference_auto_plan(box, 2.5, density, ndim)
            np.testing.assert_array_equal(got[0], box)
            assert got[1].tolist() == side and got[2].tolist() == ncell \
                and got[3].tolist() == reach, (density, ndim)


def test_window_fraction_is_the_expected_overlap_of_a_centred_window():
    """window_fraction(span, extent): for a member placed uniformly in a group of side
    ``extent``, the mean fraction of the group inside the window of width ``span``
    centred on it, against a Monte Carlo average (4 standard errors)."""
    rng = np.random.default_rng(7)
    for extent in (0.5, 3.0, 10.0):
        for span in (0.1, 0.5, 1.0, 1.7, 2.0, 2.5):
            span = span * extent
            x = rng.random(200_000) * extent
            overlap = (np.minimum(x + span / 2, extent) - np.maximum(x - span / 2, 0.0)) / extent
            err = overlap.std() / np.sqrt(x.size)
            got = neighbors.window_fraction(span, extent)
            assert abs(got - overlap.mean()) <= 4 * err + 1e-12, (span, extent)
    assert neighbors.window_fraction(1.0, 0.0) == 1.0  # a flat group: all of it


def _reference_extent_plan(cutoff, n, extent, ndim=3, max_reach=4, cell_cost=25.0):
    """extent_plan_into's documented choice in plain Python: work = n x the product of the
    centred windows' overlaps + cell_cost x visited cells; one cell per axis (n + cell_cost)
    unless a reach is 3 % better, the smallest stencil first."""
    def overlap(span, side):
        return 1.0 if span >= 2 * side else span / side - (span / side) ** 2 / 4
    best, best_work = ([1.0] * 3, [1] * 3, [0] * 3), n + cell_cost
    for reach in range(1, max_reach + 1):
        span = (2 * reach + 1) * (cutoff / reach)
        found = float(n)
        for k in range(ndim):
            found *= overlap(span, extent[k])
        work = found + cell_cost * (2 * reach + 1) ** ndim
        if work < best_work * 0.97:
            best_work = work
            best = ([cutoff / reach if k < ndim else 1.0 for k in range(3)],
                    [0 if k < ndim else 1 for k in range(3)],
                    [reach if k < ndim else 0 for k in range(3)])
    return best


def test_extent_plan_is_the_documented_cost_minimum():
    """The compiled extent_plan_into picks, from a compact school to a sparse swarm and a
    flat one, exactly the plan of its cost model written out in Python; a group narrower
    than half its smallest stencil is planned as all pairs whatever its size."""
    picked = set()
    for ndim in (2, 3):
        for n in (50, 300, 1000, 5000, 100_000):
            for side in np.geomspace(0.05, 500.0, 120):
                for extent in ([side] * 3, [side, 2 * side, 0.0]):
                    got = neighbors.empty_plan(np.zeros(3))[1:]
                    neighbors.extent_plan_into(2.5, n, *extent, ndim, 4, 25.0, *got)
                    want = _reference_extent_plan(2.5, n, extent, ndim)
                    assert [a.tolist() for a in got] == [list(w) for w in want], (n, extent)
                    picked.add(int(got[2][0]))
                    if max(extent) <= 2.5 * 2.25 / 2:  # inside reach 4's window (2.25 cutoffs)
                        assert got[1].tolist() == [1, 1, 1]
    assert {0, 1, 2} <= picked  # all pairs, reach 1 and reach 2 all occur


def test_couzin_plan_uses_the_bounding_box_density():
    """In open space the Couzin plan is auto_plan at N / volume of the agents' bounding box,
    each side at least r_a (a flat or clustered school is not planned as a point)."""
    from simcore.models import couzin

    rng = np.random.default_rng(4)
    for spread, flat in ((3.0, False), (40.0, False), (400.0, True), (0.1, False)):
        params = couzin.Params(n=300, r_a=14.0)
        pos = rng.normal(0.0, spread, (300, 3)) + [1e5, -2e3, 7.0]
        if flat:
            pos[:, 2] = 7.0
        extent = np.maximum(pos.max(axis=0) - pos.min(axis=0), params.r_a)
        want = neighbors.auto_plan(np.zeros(3), params.r_a, density=300 / float(np.prod(extent)))
        got = couzin.cell_plan(params, pos)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_periodic_work_counts_candidates_and_cell_visits():
    """periodic_work: all pairs cost n + one occupied cell; a plan's candidates are the
    density times its stencil's volume; cells are priced by their Poisson occupancy
    (a crowded grid: every visited cell occupied; a near-empty one: every cell empty)."""
    box = np.full(3, 60.0)
    assert neighbors.periodic_work(500, *neighbors.all_pairs_plan(box)) == pytest.approx(550.0)
    cells = neighbors.plan(box, 15.0, reach=1)  # 4 cells of 15 a side, a 3³ stencil
    crowded = neighbors.periodic_work(10**6, *cells)
    assert crowded == pytest.approx(10**6 * 27 / 64 + 27 * 50.0)
    sparse = neighbors.periodic_work(1, *neighbors.plan(np.full(3, 6000.0), 15.0, reach=1))
    assert sparse == pytest.approx(27 * 5.0, rel=1e-6)  # 400³ cells, one particle


def test_couzin_float32_periodic_plan_takes_all_pairs_where_cells_cost_more():
    """In a periodic box the float32 plan is all pairs where periodic_work expects them at
    most half the density plan's work, else the density plan (benchmarks/RESULTS.md,
    session 28); float64 keeps the density plan."""
    from simcore.models import couzin

    cases = [(100, 60.0, 15.0, True), (300, 60.0, 15.0, True), (1000, 100.0, 15.0, False),
             (2000, 150.0, 15.0, False), (2000, 25.0, 7.0, False), (10000, 60.0, 7.0, False)]
    for n, box, r_a, all_pairs in cases:
        kw = dict(n=n, boundary="periodic", box=box, r_a=r_a, r_o=3.0)
        density = neighbors.auto_plan(np.full(3, box), r_a, density=n / box ** 3)
        got64 = couzin.cell_plan(couzin.Params(**kw), np.zeros((n, 3)))
        got32 = couzin.cell_plan(couzin.Params(**kw, kernel_precision="float32"),
                                 np.zeros((n, 3)))
        for a, b in zip(got64, density):
            np.testing.assert_array_equal(a, b)
        every = neighbors.all_pairs_plan(np.full(3, box))
        ratio = neighbors.periodic_work(n, *density) / neighbors.periodic_work(n, *every)
        assert (ratio >= 2.0) == all_pairs, ratio
        for a, b in zip(got32, every if all_pairs else density):
            np.testing.assert_array_equal(a, b)


def test_couzin_float32_plan_uses_the_bounding_box_extent():
    """The float32 kernel's open-space plan is extent_plan_into over the agents' bounding
    box: all pairs for a compact school (the cohesive school of benchmarks/couzin.py's
    section D), cells once a large school has spread, reflecting walls alike."""
    from simcore.models import couzin

    rng = np.random.default_rng(4)
    reaches = []
    for n, spread, flat in ((300, 3.0, False), (2000, 2.0, False), (2000, 40.0, False),
                            (3000, 400.0, True), (300, 0.1, False)):
        for walls in ({}, dict(boundary="reflecting", box=1e4)):
            params = couzin.Params(n=n, r_a=14.0, kernel_precision="float32", **walls)
            pos = rng.normal(0.0, spread, (n, 3)) + [1e5, -2e3, 7.0]
            if flat:
                pos[:, 2] = 7.0
            extent = pos.max(axis=0) - pos.min(axis=0)
            want = neighbors.empty_plan(np.zeros(3))
            neighbors.extent_plan_into(params.r_a, n, *extent, 3, neighbors.AUTO_MAX_REACH,
                                       neighbors.AUTO_CELL_COST, *want[1:])
            got = couzin.cell_plan(params, pos)
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)
            reaches.append(int(got[3][0]))
    assert reaches[0] == reaches[2] == 0 and reaches[4] >= 1  # compact: all pairs; spread: cells
