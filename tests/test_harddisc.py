"""Hard-disc EDMD against a brute-force event loop, conservation laws, Henderson's equation
of state, the Enskog collision rate, Maxwell relaxation, and the driver contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial import cKDTree

import simcore
from simcore.models import harddisc as hd

from conftest import assert_one_paragraph, run_cli, run_cli_here


def periodic_box(n, phi, **kw):
    return hd.Params(n=n, phi=phi, expansion=1.0, x_boundary="periodic",
                     y_boundary="periodic", **kw)


def min_distance(pos, p):
    """Smallest centre distance (minimum image on periodic axes)."""
    lx, ly = p.L_x, p.L_y
    px, py = p.x_boundary == "periodic", p.y_boundary == "periodic"
    pts = pos.copy()
    if px or py:
        box = np.array([lx if px else 10 * lx, ly if py else 10 * ly])
        pts = np.mod(pts, box)
        tree = cKDTree(pts, boxsize=box)
    else:
        tree = cKDTree(pts)
    d, _ = tree.query(pts, k=2)
    return d[:, 1].min()


# ---------------------------------------------------------------------------- kernel pieces
def test_pair_time_stable_root_and_round_off():
    P = np.zeros((2, 5))
    P[0, :4] = [0.0, 0.0, 1.0, 0.0]
    P[1, :4] = [3.0, 0.0, -1.0, 0.0]
    # head on: gap 2 closed at relative speed 2
    assert hd._pair_time(P, 0, 1, 0.0, 1.0, 0, 0, False, False) == pytest.approx(1.0, rel=1e-15)
    # grazing at impact parameter b < σ: contact when |r| = σ, i.e. dx = √(σ² − b²)
    P[1, 1] = 0.6
    t = hd._pair_time(P, 0, 1, 0.0, 1.0, 0, 0, False, False)
    assert t == pytest.approx((3.0 - math.sqrt(1 - 0.36)) / 2.0, rel=1e-14)
    P[1, 1] = 1.2  # misses
    assert hd._pair_time(P, 0, 1, 0.0, 1.0, 0, 0, False, False) == np.inf
    P[1, 2] = 1.0  # no relative motion (the branch-free root divides 0 by 0: discarded)
    assert hd._pair_time(P, 0, 1, 0.0, 1.0, 0, 0, False, False) == np.inf
    P[1, :4] = [3.0, 0.0, 2.0, 0.0]  # receding
    assert hd._pair_time(P, 0, 1, 0.0, 1.0, 0, 0, False, False) == np.inf
    # overlapping by round-off: approaching -> collide now; separating -> never
    P[:, 4] = 5.0  # both local clocks at t = 5
    P[1, :4] = [1.0 - 1e-13, 0.0, -1.0, 0.0]
    assert hd._pair_time(P, 0, 1, 5.0, 1.0, 0, 0, False, False) == 5.0
    P[1, 2] = 2.0
    assert hd._pair_time(P, 0, 1, 5.0, 1.0, 0, 0, False, False) == np.inf
    # nearly touching, slow approach: the stable root keeps full relative precision
    P[:, 4] = 0.0
    P[1, :4] = [1.0 + 1e-9, 0.0, 1.0 - 1e-6, 0.0]
    t = hd._pair_time(P, 0, 1, 0.0, 1.0, 0, 0, False, False)
    assert t == pytest.approx(1e-9 / 1e-6, rel=1e-6)
    # periodic minimum image: 0.5 apart across x = 0 in a box of 10, σ = 0.2
    P[0, :4] = [0.2, 0.0, -1.0, 0.0]
    P[1, :4] = [9.7, 0.0, 1.0, 0.0]
    assert hd._pair_time(P, 0, 1, 0.0, 0.04, 10.0, 10.0, True, False) == pytest.approx(0.15)


def test_wall_and_crossing_times_every_direction():
    inf = np.inf
    # walls at rw = 0.5 from the box edges [0, 10] x [0, 5]
    assert hd._wall_time(1.0, 2.0, 1.0, 0.0, 10.0, 5.0, False, False, 0.5) == (8.5, 0)
    assert hd._wall_time(1.0, 2.0, 0.0, -2.0, 10.0, 5.0, False, False, 0.5) == (0.75, 1)
    assert hd._wall_time(1.0, 2.0, -1.0, 4.0, 10.0, 5.0, False, False, 0.5) == (0.5, 0)
    assert hd._wall_time(1.0, 2.0, 1.0, 0.0, 10.0, 5.0, True, False, 0.5) == (inf, 0)
    assert hd._wall_time(1.0, 2.0, 0.0, 0.0, 10.0, 5.0, False, False, 0.5) == (inf, 0)
    # 5 x 5 cells of side 1: crossing +y first, then the walled edge cells, then periodic
    args = (5, 5, 1.0, 1.0, 5.0, 5.0)
    assert hd._cross_time(1.2, 0.3, 1.0, 1.0, 1, 0, *args, False, False) == (
        pytest.approx(0.7), 2)
    assert hd._cross_time(1.2, 0.3, -1.0, -1.0, 1, 0, *args, False, False) == (
        pytest.approx(0.2), 1)
    assert hd._cross_time(4.5, 2.5, 1.0, 0.0, 4, 2, *args, False, False) == (inf, -1)
    assert hd._cross_time(4.5, 2.5, 1.0, 0.0, 4, 2, *args, True, False) == (0.5, 0)
    assert hd._cross_time(0.5, 0.5, -1.0, -0.25, 0, 0, *args, False, True) == (2.0, 3)
    assert hd._cross_time(0.5, 0.5, 0.0, 0.0, 0, 0, *args, True, True) == (inf, -1)


def brute_force_edmd(pos, vel, p, t_end):
    """Independent O(N²)-per-event reference: walls in x and y, textbook quadratic root."""
    pos, vel = pos.copy(), vel.copy()
    r = p.wall_radius
    lo = np.array([r, r])
    hi = np.array([p.L_x - r, p.L_y - r])
    t = 0.0
    n = len(pos)
    while True:
        best, kind, who = t_end - t, None, None
        for i in range(n):
            for d in range(2):
                if vel[i, d] > 0:
                    dt = (hi[d] - pos[i, d]) / vel[i, d]
                elif vel[i, d] < 0:
                    dt = (lo[d] - pos[i, d]) / vel[i, d]
                else:
                    continue
                if dt < best:
                    best, kind, who = dt, "wall", (i, d)
            for j in range(i + 1, n):
                dr, dv = pos[i] - pos[j], vel[i] - vel[j]
                a, b, c = dv @ dv, dr @ dv, dr @ dr - p.sigma ** 2
                if b >= 0 or b * b - a * c <= 0:
                    continue
                dt = (-b - math.sqrt(b * b - a * c)) / a
                if dt < best:
                    best, kind, who = dt, "pair", (i, j)
        pos += vel * best
        t += best
        if kind is None:
            return pos, vel
        if kind == "wall":
            vel[who] = -vel[who]
        else:
            i, j = who
            nrm = (pos[i] - pos[j]) / p.sigma
            dvn = (vel[i] - vel[j]) @ nrm
            vel[i] -= dvn * nrm
            vel[j] += dvn * nrm


@pytest.mark.parametrize("queue", ["heap", "calendar"])
def test_event_loop_matches_brute_force(queue):
    p = hd.Params(n=20, phi=0.2, expansion=1.0, t_end=6.0, frame_dt=6.0, queue=queue,
                  cell_size=1.0)
    st = hd.init_state(p, 4)
    ref_pos, ref_vel = brute_force_edmd(st["positions"], st["velocities"], p, 6.0)
    hd.advance(st, p, 0, 0, 1)
    assert st["stats"][hd.ST_COLL] > 10 and st["stats"][hd.ST_WALL] > 5
    # the two root formulas differ in the last bits, which collisions amplify (chaos) to
    # ~1e-7 here; one wrong or missed event would change the result by O(1)
    np.testing.assert_allclose(st["positions"], ref_pos, atol=1e-5)
    np.testing.assert_allclose(st["velocities"], ref_vel, atol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000, 1025])
def test_event_tree_holds_the_earliest_key_with_the_index_tie_break(n):
    """Every node of the built tournament tree is the earlier (key, index) of its two
    children, so the root is the queue's next event; equal keys go to the lower index and
    padding leaves (beyond N) never win, even against particles with no event (inf)."""
    from simcore.models.harddisc import _leaves
    from simcore.models.harddisc.queues import _build_queue

    g = np.random.default_rng(n)
    E = np.zeros((n, 4))
    E[:, 3] = g.choice([0.5, 1.0, 2.0, np.inf], size=n)  # many ties
    tree = np.zeros((2 * _leaves(n), 2))
    dummy = np.zeros(1, dtype=np.int64)
    _build_queue(E, tree, False, np.zeros(4), dummy, dummy, dummy, dummy, True)
    m = tree.shape[0] // 2
    assert m >= n and m & (m - 1) == 0
    for k in range(1, m):
        children = sorted(map(tuple, tree[2 * k:2 * k + 2]))
        assert tuple(tree[k]) == children[0]
    first = min(range(n), key=lambda i: (E[i, 3], i))
    assert tree[1, 1] == first and tree[1, 0] == E[first, 3]


def test_heap_and_calendar_queue_give_identical_bits():
    out = []
    for queue in ("heap", "calendar"):
        p = hd.Params(n=3000, phi=0.1, y_boundary="periodic", queue=queue, equilibrate=1.0,
                      t_end=20.0, frame_dt=5.0)
        st = hd.init_state(p, 7)
        hd.advance(st, p, 0, 0, 4)
        out.append((st["positions"].tobytes(), st["velocities"].tobytes(),
                    st["stats"].tobytes()))
    assert out[0] == out[1]


# ---------------------------------------------------------------------------- conservation
def test_energy_and_momentum_over_a_million_collisions():
    p = periodic_box(10000, 0.10, frame_dt=400.0, t_end=400.0)
    st = hd.init_state(p, 1)
    v0 = st["velocities"].copy()
    e0 = 0.5 * (v0 ** 2).sum()
    assert e0 == pytest.approx(p.n * p.T, rel=1e-14)
    hd.advance(st, p, 0, 0, 1)
    assert st["stats"][hd.ST_COLL] >= 1_000_000
    e1 = 0.5 * (st["velocities"] ** 2).sum()
    assert abs(e1 / e0 - 1) < 1e-12
    # total momentum starts at ~1e-13 and stays there (each collision conserves it exactly
    # up to round-off); the scale is √(N T) = 100
    assert np.abs(st["velocities"].sum(0)).max() < 1e-10
    assert min_distance(st["positions"], p) > p.sigma * (1 - 1e-9)


def test_momentum_along_periodic_y_with_walls_in_x():
    p = hd.Params(n=2000, phi=0.1, y_boundary="periodic", t_end=50.0, frame_dt=50.0)
    st = hd.init_state(p, 2)
    py0 = st["velocities"][:, 1].sum()
    hd.advance(st, p, 0, 0, 1)
    assert st["stats"][hd.ST_WALL] > 100
    assert abs(st["velocities"][:, 1].sum() - py0) < 1e-11
    assert abs(st["velocities"][:, 0].sum()) > 1e-3  # x walls do not conserve p_x


def test_no_overlaps_on_frames_of_an_expansion(tmp_path):
    out = simcore.run("harddisc", out=tmp_path / "e.nc", seed=5,
                      overrides={"n": 1500, "phi": 0.08, "t_end": 60.0, "frame_dt": 5.0,
                                 "equilibrate": 2.0, "precision": "float64"})
    with simcore.open_trajectory(out) as ds:
        p = ds.simcore.params
        pos = ds["coordinates"].values[..., :2]
        vel = ds["velocities"].values[..., :2]
        energy = ds["energy"].values
    r = p.wall_radius
    assert pos.shape == (13, 1500, 2)
    assert (pos[0, :, 0] <= p.L - r + 1e-9).all()  # behind the partition at t = 0
    assert pos[-1, :, 0].max() > 1.2 * p.L  # and expanding afterwards
    for f in range(pos.shape[0]):
        assert min_distance(pos[f], p) > p.sigma * (1 - 1e-9)
        assert pos[f, :, 0].min() >= r - 1e-9 and pos[f, :, 0].max() <= p.L_x - r + 1e-9
        assert pos[f, :, 1].min() >= r - 1e-9 and pos[f, :, 1].max() <= p.L_y - r + 1e-9
    np.testing.assert_allclose(0.5 * (vel ** 2).sum(axis=(1, 2)), energy, rtol=1e-12)
    np.testing.assert_allclose(energy, p.n * p.T, rtol=1e-12)


# ---------------------------------------------------------------------------- statistics
def test_velocities_relax_to_the_2d_maxwellian():
    p = periodic_box(3000, 0.1, velocities="equal_speed", t_end=40.0, frame_dt=40.0)
    st = hd.init_state(p, 3)

    def rayleigh_p(v):
        speed = np.hypot(v[:, 0], v[:, 1])
        return sps.kstest(speed, lambda s: 1 - np.exp(-s * s / (2 * p.T))).pvalue

    assert rayleigh_p(st["velocities"]) < 1e-10  # the start is far from Maxwellian
    hd.advance(st, p, 0, 0, 1)  # ≈ 21 collisions per particle (ν = 0.533)
    assert 2 * st["stats"][hd.ST_COLL] / p.n > 15
    assert rayleigh_p(st["velocities"]) > 1e-3
    assert sps.kstest(st["velocities"][:, 0] / math.sqrt(p.T), "norm").pvalue > 1e-3


def _eos(eta, collisions, seed=11, n=10000, frames=10):
    """Collision rate per particle and Z = 1 + virial/(2 t N T) in a periodic box, with
    block standard errors from ``frames`` frame intervals."""
    nu_th = 2 * (4 * eta / math.pi) * hd.henderson_g(eta) * math.sqrt(math.pi)
    t = 2 * collisions / (n * nu_th)
    p = periodic_box(n, eta, equilibrate=5.0, frame_dt=t / frames, t_end=t / frames * frames)
    st = hd.init_state(p, seed)
    nus, zs = [], []
    for _ in range(frames):
        c0, w0 = st["stats"][hd.ST_COLL], st["stats"][hd.ST_VIRIAL]
        hd.advance(st, p, 0, 0, 1)
        nus.append(2 * (st["stats"][hd.ST_COLL] - c0) / (n * p.frame_dt))
        zs.append(1 + (st["stats"][hd.ST_VIRIAL] - w0) / (2 * p.frame_dt * n * p.T))
    nus, zs = np.array(nus), np.array(zs)
    se = lambda a: a.std(ddof=1) / math.sqrt(len(a))  # noqa: E731
    return nus.mean(), se(nus), nu_th, zs.mean(), se(zs)


@pytest.mark.parametrize("eta", [0.05, 0.10])
def test_collision_rate_and_pressure_fast(eta):
    """~4e5 collisions: the issue's tolerances (1.5 % on ν, 0.5 % on Z) still exceed five
    block standard errors, so the test resolves them."""
    nu, nu_se, nu_th, z, z_se = _eos(eta, 4e5)
    assert 5 * nu_se < 0.015 * nu_th and 5 * z_se < 0.005 * hd.henderson_z(eta)
    assert abs(nu / nu_th - 1) < 0.015
    assert abs(z / hd.henderson_z(eta) - 1) < 0.005


@pytest.mark.slow
@pytest.mark.parametrize("eta", [0.05, 0.10])
def test_collision_rate_and_pressure_2e6(eta):
    nu, nu_se, nu_th, z, z_se = _eos(eta, 2e6, frames=20)
    assert abs(nu / nu_th - 1) < 0.015 and 5 * nu_se < 0.015 * nu_th
    assert abs(z / hd.henderson_z(eta) - 1) < 0.005 and 5 * z_se < 0.005 * hd.henderson_z(eta)


# ---------------------------------------------------------------------------- driver contract
def test_frame_intervals_grouped_in_one_call_give_the_same_bits(tmp_path):
    """(Seeded reproducibility and resume: tests/test_contract.py, for every engine.)"""
    from simcore.config import resolve

    kw = dict(seed=3, overrides={"n": 600, "phi": 0.1, "t_end": 24.0, "frame_dt": 2.0,
                                 "equilibrate": 1.0})
    a = simcore.run("harddisc", out=tmp_path / "a.nc", **kw)
    params, settings, preset = resolve("harddisc", **kw)
    assert settings.steps == 12 and settings.write_every == 1
    # grouping frame intervals into one advance call changes nothing either
    d = simcore.run("harddisc", out=tmp_path / "d.nc", **dict(kw, write_every=3))
    with simcore.open_trajectory(a) as x, simcore.open_trajectory(d) as y:
        np.testing.assert_array_equal(x["coordinates"].values[::3], y["coordinates"].values)
        np.testing.assert_array_equal(x["collisions"].values[::3], y["collisions"].values)
    with simcore.open_trajectory(a) as x:
        assert x["energy"].dtype == np.float64 and x["collisions"].values[-1] > 0


def test_steps_follow_t_end():
    from simcore.config import resolve

    p, s, _ = resolve("harddisc", preset="hydro")
    assert s.steps * p.frame_dt == pytest.approx(p.t_end)
    p, s, _ = resolve("harddisc", steps=7, overrides={"frame_dt": 2.0})
    assert p.t_end == 14.0 and s.steps == 7
    with pytest.raises(simcore.UserInputError, match="disagrees"):
        resolve("harddisc", preset="hydro", steps=5)
    with pytest.raises(simcore.UserInputError, match="whole number"):
        resolve("harddisc", overrides={"t_end": 10.5})
    # steps = 0 stored t_end = 0, a file no reader accepted (like --set t_end=0, refused)
    with pytest.raises(simcore.UserInputError, match="steps must be at least 1"):
        resolve("harddisc", steps=0)


@pytest.mark.parametrize("overrides,fragment", [
    ({"phi": 0.3}, "too dense"),
    ({"phi": -0.1}, "phi"),
    ({"n": 4, "phi": 0.2, "y_boundary": "periodic"}, "periodic y axis"),
    ({"cell_size": 0.5}, "cell_size"),
    ({"y_boundary": "open"}, "y_boundary"),
    ({"walls": 1}, "unknown parameter"),
])
def test_bad_parameters_are_user_errors(overrides, fragment):
    from simcore.config import resolve

    with pytest.raises(simcore.UserInputError, match=fragment):
        resolve("harddisc", overrides=overrides)


def test_cli_run_and_bad_input(tmp_path, capsys):
    out = tmp_path / "r.nc"
    run_cli("run", "harddisc", "--set", "n=200", "--set", "t_end=4", "--set", "frame_dt=2",
            "-o", out, "--quiet", check_rc=0)
    proc = run_cli_here(capsys, "run", "harddisc", "--set", "phi=0.4", "-o", tmp_path / "x.nc",
                        check_rc=2)
    assert_one_paragraph(proc, "too dense")
    proc = run_cli_here(capsys, "run", "harddisc", "--preset", "hydro", "--steps", "3", "-o",
                        tmp_path / "y.nc", check_rc=2)
    assert_one_paragraph(proc, "t_end")
