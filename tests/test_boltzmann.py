"""Coarse-grained Boltzmann entropy: F(τ), the collisionless run, equilibrium references,
exact vs Stirling, and the analyze/plot commands on a hard-disc file."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import gammaln

import simcore
from simcore.analysis import boltzmann as bz
from simcore.models import harddisc as hd

from conftest import run_cli

# F(τ) tabulated independently of free_flight_entropy (numerical quadrature)
F_TABLE = {0.5: 0.1250, 1: 0.2500, 2: 0.5000, 2.5: 0.598144, 3: 0.655465, 3.5: 0.684616,
           4: 0.693147, 5: 0.679733, 6: 0.674416, 7: 0.686323, 8: 0.693147, 10: 0.686454,
           13: 0.691173}


def test_free_flight_closed_form():
    taus = np.array(list(F_TABLE))
    np.testing.assert_allclose(bz.free_flight_entropy(taus), list(F_TABLE.values()), atol=6e-7)
    grid = np.linspace(0, 2, 9)
    np.testing.assert_allclose(bz.free_flight_entropy(grid), grid / 4, atol=1e-15)
    assert bz.free_flight_entropy(0.0) == 0.0
    np.testing.assert_allclose(bz.free_flight_entropy(taus, "periodic"),
                               bz.free_flight_entropy(2 * taus), atol=0)
    f = bz.free_flight_entropy(np.linspace(4, 40, 500))
    assert f.max() <= math.log(2) + 1e-12
    with pytest.raises(simcore.UserInputError):
        bz.free_flight_entropy(1.0, geometry="ring")


def test_collisionless_expansion_follows_F():
    """Point particles: ΔS_B(t)/N = F(Δv t / L) within (K − K0)/(2N) + 3/√N.

    F concerns (x, v_x), the only coordinates that evolve; y and v_y are left uncut (one
    v_y cell), which keeps N/K ≈ 140 with N = 2e5, Δx = L/25, Δv = 0.25 (with 2D velocity
    cells N/K ≈ 10 here and Miller-Madow no longer describes the bias)."""
    p = hd.Params(n=200_000, phi=0.02, interactions=False, frame_dt=1.0, t_end=1.0)
    st = hd.init_state(p, 8)
    dv, nx = 0.25, int(round(p.L_x / (p.L / 25)))
    box = (p.L_x, p.L_y)

    def entropy():
        x, v = st["positions"], st["velocities"]
        return bz.cell_entropies(x[:, 0], x[:, 1], v[:, 0], np.zeros(p.n), box, dv, nx, 1)

    _, s0, k0 = entropy()
    t = 0.0
    for tau in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0):
        target = tau * p.L / dv
        p_step = p.model_copy(update={"frame_dt": target - t})
        hd.advance(st, p_step, 0, 0, 1)
        t = target
        _, s, k = entropy()
        got = (s - s0) / p.n
        tol = (k - k0) / (2 * p.n) + 3 / math.sqrt(p.n)
        assert abs(got - bz.free_flight_entropy(tau)) < tol, (tau, got, tol)
    assert st["stats"][hd.ST_COLL] == 0 and st["stats"][hd.ST_WALL] > p.n


def _eq_delta(n, dv, seed):
    p = hd.Params(n=n, phi=0.02, interactions=False)
    box, nx = (p.L_x, p.L_y), 16  # x-strips of width L/8
    a = bz.cell_entropies(*bz.equilibrium_sample(p, seed, initial=True), box, dv, nx, 1)
    b = bz.cell_entropies(*bz.equilibrium_sample(p, seed + 1), box, dv, nx, 1)
    return (b[1] - a[1]) / n, a[2], b[2], p


@pytest.mark.parametrize("dv", [0.5, 1.0])
def test_equilibrium_references_approach_ln2(dv):
    """ΔS^St/N = ln 2 − (K_2V − K_V)/(2N) up to sampling noise (≈ 2/√N for two independent
    samples, tolerance 3σ = 6/√N); the gap to ln 2 closes as N/K grows."""
    gaps = []
    for n in (10_000, 100_000, 1_000_000):
        delta, kv, k2v, _ = _eq_delta(n, dv, seed=n)
        predicted = math.log(2) - (k2v - kv) / (2 * n)
        assert abs(delta - predicted) < 6 / math.sqrt(n), (n, delta, predicted)
        gaps.append(math.log(2) - delta)
    assert abs(gaps[2]) < abs(gaps[0]) and abs(gaps[2]) < 0.005


def test_equilibrium_entropy_closed_form():
    """E[s^St] ≈ ln(A/N) + ln(2πT) + 2 + 2Δv²/(24T) − (K − 1)/(2N) (strips on a uniform gas)."""
    p = hd.Params(n=100_000, phi=0.02, interactions=False, expansion=1.0)
    x, y, vx, vy = bz.equilibrium_sample(p, 5)
    for dv in (0.5, 1.0):
        _, s, k = bz.cell_entropies(x, y, vx, vy, (p.L_x, p.L_y), dv, 8, 1)
        want = (math.log(p.L_x * p.L_y / p.n) + math.log(2 * math.pi) + 2 + dv * dv / 12
                - (k - 1) / (2 * p.n))
        assert abs(s / p.n - want) < 3 / math.sqrt(p.n)


def test_exact_and_stirling_forms():
    g = np.random.default_rng(0)
    n = 5000
    x, y = g.random(n) * 10, g.random(n) * 10
    vx, vy = g.standard_normal(n), g.standard_normal(n)
    # fine cells: every occupied cell is singly occupied -> the forms differ by exactly K
    s_ex, s_st, k = bz.cell_entropies(x, y, vx, vy, (10.0, 10.0), 1e-3, 1000, 1000)
    assert k == n
    assert s_st - s_ex == pytest.approx(k, rel=1e-12)
    # coarse cells: difference = Σ_α [N_α − N_α ln N_α + ln N_α!], singles adding 1 each
    s_ex, s_st, k = bz.cell_entropies(x, y, vx, vy, (10.0, 10.0), 0.5, 2, 1)
    keys = (np.minimum((x / 5).astype(int), 1) * 10**6 + np.floor(vx / 0.5).astype(int) * 1000
            + np.floor(vy / 0.5).astype(int))
    counts = np.unique(keys, return_counts=True)[1].astype(float)
    assert k == counts.size
    want = (counts - counts * np.log(counts) + gammaln(counts + 1)).sum()
    assert s_st - s_ex == pytest.approx(want, rel=1e-10)
    singles = (counts == 1).sum()
    assert singles > 0 and want - singles == pytest.approx(
        (counts[counts > 1] - counts[counts > 1] * np.log(counts[counts > 1])
         + gammaln(counts[counts > 1] + 1)).sum(), rel=1e-12)


@pytest.fixture(scope="module")
def collisionless_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("hd") / "free.nc"
    return simcore.run("harddisc", preset="collisionless", seed=2,
                       overrides={"n": 3000, "t_end": 1440.0, "frame_dt": 144.0}, out=out)


def test_boltzmann_entropy_dataset(collisionless_file):
    with simcore.open_trajectory(collisionless_file) as ds:
        with pytest.warns(UserWarning, match="N/K"):
            ent = bz.boltzmann_entropy(ds, dv=[0.5, 1.0])
        with pytest.raises(simcore.UserInputError, match="dv"):
            bz.boltzmann_entropy(ds, dv=[-1.0])
        with pytest.raises(simcore.UserInputError, match="cells"):
            bz.boltzmann_entropy(ds, cells="hex")
        grid = bz.boltzmann_entropy(ds, dv=[1.0], cells="grid", dx=ds.simcore.params.L / 4)
    assert ent["S_exact"].dims == ("dv", "time") and ent.sizes["time"] == 11
    for name in ("S_stirling", "s_per_particle", "K", "miller_madow", "free_flight"):
        assert ent[name].dims == ("dv", "time")
    np.testing.assert_allclose(ent["miller_madow"], (ent["K"] - 1) / (2 * 3000))
    assert float(ent["delta_s_stirling"].isel(time=0).max()) == 0.0
    assert (ent["delta_s_stirling"].isel(time=-1) > 0.3).all()
    assert ent.attrs["warning"].startswith("N/K")
    assert grid.attrs["dy"] == pytest.approx(ds.simcore.params.L / 4)


def test_analyze_and_plot_commands(collisionless_file, tmp_path):
    out = tmp_path / "ent.nc"
    run_cli("analyze", collisionless_file, "-o", out, check_rc=0)
    import xarray as xr

    with xr.open_dataset(out) as ent:
        params = simcore.open_trajectory(collisionless_file).simcore.params
        assert set(ent["dv"].values) == set(bz.default_dv(params))
        assert "S_exact" in ent and "S_eq_kV_stirling" in ent
    fig = tmp_path / "ent.png"
    run_cli("plot", collisionless_file, "-o", fig, check_rc=0)
    assert fig.stat().st_size > 10_000


def test_default_dv_fits_the_run():
    """The default Δv list keeps N/K >= 50 in the expanded equilibrium, so `simcore
    analyze` of a preset run does not warn about its own defaults (issue 15); Δv scales
    with √T; a run too small for any Δv gets the coarsest."""
    from simcore.models.harddisc import PRESETS, Params

    knudsen = Params(**{k: v for k, v in PRESETS["knudsen"].items() if k in Params.model_fields})
    dvs = bz.default_dv(knudsen)
    assert len(dvs) == 3 and list(dvs) == sorted(dvs)
    nx, ny, _ = bz._spatial_cells(knudsen, None, "strips")
    sample = bz.equilibrium_sample(knudsen, seed=1, initial=False)
    for d in dvs:
        K = bz.cell_entropies(*sample, (knudsen.L_x, knudsen.L_y), d, nx, ny)[2]
        assert knudsen.n / K >= bz.MIN_PARTICLES_PER_CELL
    finer = [d for d in bz.DV_LADDER if d < dvs[0]]
    for d in finer:  # every finer Δv of the ladder would be biased
        K = bz.cell_entropies(*sample, (knudsen.L_x, knudsen.L_y), d, nx, ny)[2]
        assert knudsen.n / K < bz.MIN_PARTICLES_PER_CELL
    hot = knudsen.model_copy(update={"T": 4.0})
    np.testing.assert_allclose(bz.default_dv(hot), 2 * np.asarray(dvs))
    tiny = knudsen.model_copy(update={"n": 20})
    assert bz.default_dv(tiny) == tuple(bz.DV_LADDER[-3:])

