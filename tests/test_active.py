"""ABP/AOUP engine and diagnostics against closed forms, conservation laws and phase behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

import simcore
from simcore.analysis.active import active_diagnostics, block_mean, free_abp_msd
from simcore.models import active
from simcore.rng import kernel_key


def brute_forces(x, p):
    """All-pairs reference for the pair forces (and divergences) in the periodic box."""
    L = p.box
    d = x[:, None, :] - x[None, :, :]
    d -= L * np.round(d / L)
    r2 = (d ** 2).sum(-1)
    np.fill_diagonal(r2, np.inf)
    inside = r2 < p.interaction_range ** 2
    r = np.sqrt(r2)
    if p.potential == "wca":
        s6 = (p.sigma ** 2 / r2) ** 3
        phi = 24 * p.epsilon_lj * (2 * s6 * s6 - s6) / r
        dphi = -24 * p.epsilon_lj * (26 * s6 * s6 - 7 * s6) / r2
    else:
        u = p.beta * (2 * p.radius - r)
        phi = p.k * np.logaddexp(0, u) / p.beta
        dphi = -p.k / (1 + np.exp(-u))
    phi, dphi = np.where(inside, phi, 0), np.where(inside, dphi, 0)
    force = ((phi / np.where(inside, r, 1))[..., None] * d).sum(1)
    div = (dphi + phi / np.where(inside, r, 1)).sum(1)
    return force, div


def spread_configuration(p, seed, min_dist):
    """Random positions with no pair closer than ``min_dist`` (and some on the box edges)."""
    g = np.random.default_rng(seed)
    L = p.box
    pts = []
    while len(pts) < p.n:
        c = g.random(2) * L
        if len(pts) < 12:
            c[len(pts) % 2] = [0.0, L * (1 - 1e-12), 1e-9][len(pts) % 3]
        if pts:
            d = np.asarray(pts) - c
            d -= L * np.round(d / L)
            if (d ** 2).sum(1).min() < min_dist ** 2:
                continue
        pts.append(c)
    x = np.zeros((p.n, 3))
    x[:, :2] = pts
    return x


@pytest.mark.parametrize("potential,min_dist", [("wca", 0.85), ("soft_harmonic", 0.5)])
# direct 2D grid (many cells, few cells) and the hashed one-cell fallback (tiny box)
@pytest.mark.parametrize("n,phi", [(300, 0.3), (60, 0.5), (4, 0.3)])
def test_cell_list_forces_equal_all_pairs(potential, min_dist, n, phi):
    p = active.Params(n=n, phi=phi, potential=potential, init="uniform")
    state = active.init_state(p, 0)
    state["positions"] = spread_configuration(p, 1, min_dist)
    force, div = active.forces(state, p, divergence=True)
    want_f, want_div = brute_forces(state["positions"][:, :2], p)
    scale = np.abs(want_f).max()
    np.testing.assert_allclose(force, want_f, atol=1e-12 * scale, rtol=0)
    np.testing.assert_allclose(div, want_div, atol=1e-12 * np.abs(want_div).max(), rtol=0)
    # Newton's third law: pair forces cancel, so their sum vanishes
    assert np.abs(force.sum(0)).max() < 1e-12 * scale * n


def test_pair_across_the_boundary_is_equal_and_opposite():
    p = active.Params(n=2, phi=0.001, potential="wca")
    state = active.init_state(p, 0)
    L = p.box
    state["positions"][:] = [[0.05, 3.0, 0.0], [L - 0.95, 3.0, 0.0]]  # 1.0 apart through x = 0
    force, _ = active.forces(state, p)
    f = 24 * (2 - 1)  # WCA at r = σ
    np.testing.assert_allclose(force, [[f, 0], [-f, 0]], rtol=1e-12)


def test_trap_force_and_wrapping():
    p = active.Params(n=50, phi=0.01, potential="none", kappa=0.5, v0=5.0, D_t=1.0,
                      init="uniform", dt=1e-3)
    state = active.init_state(p, 3)
    force, div = active.forces(state, p, divergence=True)
    np.testing.assert_allclose(force, -0.5 * (state["positions"][:, :2] - p.box / 2))
    np.testing.assert_allclose(div, -1.0)
    q = active.Params(n=200, phi=0.01, potential="none", v0=50.0, D_t=1.0, init="uniform",
                      dt=1e-2)
    st = active.init_state(q, 4)
    start = st["positions"][:, :2].copy()
    active.advance(st, q, kernel_key(4), 0, 200)
    fr = active.frame(st, q)  # particle-identity order (the state is stored in cell order)
    x, image = fr["coordinates"][:, :2], fr["image"][:, :2]
    assert np.all((x >= 0) & (x < q.box))
    unwrapped = x + image * q.box
    assert np.abs(image).max() >= 1  # particles did cross the box
    # displacement per step is bounded, so the unwrapped walk is continuous
    steps = (unwrapped - start) / 200
    assert np.abs(steps).max() < q.v0 * q.dt + 6 * math.sqrt(2 * q.D_t * q.dt) * 2


def _frame_numpy(state, params):
    """The frame as NumPy built it before the one-pass kernel (the reference for its bits)."""
    force, _ = active.forces(state, params)
    if params.propulsion == "abp":
        p = np.stack([np.cos(state["theta"]), np.sin(state["theta"])], axis=1)
    else:
        p = state["g"]

    def ordered(values):
        ids = state.get("ids")
        if ids is None:
            return values
        out = np.empty_like(values)
        out[ids] = values
        return out

    drift = np.zeros((params.n, 3))
    drift[:, :2] = ordered(params.v0 * p + params.mu * force)
    out = {"coordinates": ordered(state["positions"]),
           "cell_lengths": np.array([params.box, params.box, 0.0])}
    if params.propulsion == "abp":
        out["theta"] = ordered(state["theta"])
    else:
        out["propulsion"] = np.concatenate([ordered(state["g"]), np.zeros((params.n, 1))],
                                           axis=1)
    out["image"] = np.concatenate([ordered(state["image"]), np.zeros((params.n, 1))], axis=1)
    if params.write_force:
        out["force"] = np.concatenate([ordered(force), np.zeros((params.n, 1))], axis=1)
    out["drift"] = drift
    return out


@pytest.mark.parametrize("propulsion", ["abp", "aoup"])
@pytest.mark.parametrize("write_force", [False, True])
def test_frame_kernel_has_the_bits_of_the_numpy_frame(propulsion, write_force):
    """frame()'s one-pass kernel: every variable equal, bit for bit and in dtype, to the
    NumPy construction it replaced, in a renumbered developed state with a trap."""
    p = active.Params(n=3000, phi=0.5, propulsion=propulsion, v0=3.0, mu=0.7, kappa=0.01,
                      write_force=write_force, dt=1e-4)
    state = active.init_state(p, 5)
    active.advance(state, p, kernel_key(5), 0, 1500)  # past a renumbering (SORT_EVERY)
    assert state.get("ids") is not None and np.any(state["ids"] != np.arange(p.n))
    new, old = active.frame(state, p), _frame_numpy(state, p)
    assert new.keys() == old.keys()
    for name in old:
        assert new[name].dtype == old[name].dtype and new[name].shape == old[name].shape, name
        assert np.array_equal(new[name], old[name]), name


def test_free_abp_msd_matches_closed_form(tmp_path):
    out = simcore.run("abp", preset="free_abp", seed=1, out=tmp_path / "free.nc")
    with simcore.open_trajectory(out) as ds:
        d = active_diagnostics(ds)
        p = ds.simcore.params
    lag, msd = d["lag"].values, d["msd"].values
    want = free_abp_msd(lag, p.v0, p.D_t, p.D_r)
    # independent particles: the MSD at lag t averages n particles x (T - lag) origins,
    # but origins overlap; a conservative error is sqrt(Var(r^2)/n) with
    # Var(r^2) <= 2 MSD^2 (Gaussian limit in 2D: Var = MSD^2), times 4 (5-sigma band)
    err = 5 * np.sqrt(2.0) * want / math.sqrt(p.n)
    assert np.all(np.abs(msd - want) < err), np.c_[lag, msd, want, err]
    np.testing.assert_allclose(d["msd_free"].values, want)


def stationary_moments(ds, burn=0.2):
    p = ds.simcore.params
    k0 = int(burn * ds.sizes["time"])
    x = ds["coordinates"].values[k0:, :, :2].astype(float) - p.box / 2
    return p, x


def blocked(samples):
    """Mean and block error of per-frame particle averages."""
    return block_mean(samples, 10)


def test_trapped_abp_moments_and_exact_epr(tmp_path):
    out = simcore.run("abp", preset="trapped_abp", seed=5, steps=30000,
                      overrides={"n": 1000, "precision": "float64"}, out=tmp_path / "trap.nc")
    with simcore.open_trajectory(out) as ds:
        p, x = stationary_moments(ds)
        th = ds["theta"].values[-x.shape[0]:].astype(float)
        diag = active_diagnostics(ds, burn_in=0.2)
    n = np.stack([np.cos(th), np.sin(th)], -1)
    v0, kappa, D_t, D_r = p.v0, p.kappa, p.D_t, p.D_r
    nx, nx_err = blocked((n * x).sum(-1).mean(1))
    x2, x2_err = blocked((x ** 2).sum(-1).mean(1))
    # Euler–Maruyama bias is O(kappa dt) ~ 1e-3 relative: far below the error bars
    assert abs(nx - v0 / (kappa + D_r)) < 4 * nx_err + 2e-3
    assert abs(x2 - (v0 ** 2 / (kappa * (kappa + D_r)) + 2 * D_t / kappa)) < 4 * x2_err + 5e-3
    want = v0 ** 2 / D_t * D_r / (kappa + D_r)
    assert abs(float(diag["epr_exact"]) - want) < 4 * float(diag["epr_exact_err"]) + 2e-3 * want
    # the file says the value is sampled (as scoremodels' epr_exact_total does)
    assert diag["epr_exact"].attrs["method"] == "sampled"


def test_aoup_trap_covariance_and_hypoelliptic_epr(tmp_path):
    kw = dict(propulsion="aoup", potential="none", n=1000, phi=0.01, v0=0.8, kappa=0.5,
              gamma=0.3, D_t=0.2, dt=2e-3, init="uniform", precision="float64")
    out = simcore.run("abp", seed=6, steps=40000, write_every=40, overrides=kw,
                      out=tmp_path / "aoup.nc")
    with simcore.open_trajectory(out) as ds:
        p, x = stationary_moments(ds)
        g = ds["propulsion"].values[-x.shape[0]:, :, :2].astype(float)
        diag = active_diagnostics(ds, burn_in=0.2)
    v0, kappa, gamma, D_t = p.v0, p.kappa, p.gamma, p.D_t
    cgg, cgg_err = blocked((g * g).mean((1, 2)))
    cxg, cxg_err = blocked((x * g).mean((1, 2)))
    cxx, cxx_err = blocked((x * x).mean((1, 2)))
    assert abs(cgg - 1.0) < 4 * cgg_err + 3e-3
    assert abs(cxg - v0 / (kappa + gamma)) < 4 * cxg_err + 3e-3
    assert abs(cxx - (D_t + v0 ** 2 / (kappa + gamma)) / kappa) < 4 * cxx_err + 5e-3
    want = 2 * v0 ** 2 * gamma / (D_t * (kappa + gamma))  # two dimensions
    assert abs(float(diag["epr_exact"]) - want) < 4 * float(diag["epr_exact_err"]) + 5e-3 * want
    # hypoelliptic (D_t = 0): the g-sector EPR is d·kappa per particle, whatever v0 and gamma
    out0 = simcore.run("abp", seed=7, steps=4000, write_every=40,
                       overrides=dict(kw, D_t=0.0), out=tmp_path / "aoup0.nc")
    with simcore.open_trajectory(out0) as ds:
        diag0 = active_diagnostics(ds)
    assert abs(float(diag0["epr_exact"]) - 2 * kappa) < 1e-12


def test_mips_is_bimodal_and_homogeneous_is_not(tmp_path):
    verdict = {}
    for preset in ("mips", "homogeneous"):
        # t = 15 (11 rotation times): N = 1000 nucleates a cluster by t ~ 10 for some seeds,
        # not all (seed 1 still had none at t = 10, seeds 1-6 all have one at t = 15)
        out = simcore.run("abp", preset=preset, seed=1, steps=150000, write_every=3000,
                          overrides={"n": 1000}, out=tmp_path / f"{preset}.nc")
        with simcore.open_trajectory(out) as ds:
            verdict[preset] = active_diagnostics(ds)
    mips, hom = verdict["mips"], verdict["homogeneous"]
    assert int(mips["mips"]) == 1 and int(hom["mips"]) == 0
    # the dense phase of ABP at Pe = 150 is near close packing (~0.85-0.9); the per-particle
    # local density (radius 6.3a) smears the interface into both class means
    assert float(mips["dense_density"]) > 0.75 and float(mips["dilute_density"]) < 0.5
    assert float(mips["largest_cluster_fraction"]) > 0.5
    assert float(hom["largest_cluster_fraction"]) < 0.2


def test_unstable_time_step_is_a_clear_error(tmp_path):
    with pytest.raises(simcore.UnstableRunError, match=r"before step \d+ .*dt = 0.005 is too "
                       r"large.*rerun with dt <= 0.0001"):
        simcore.run("abp", preset="mips", steps=3000, overrides={"n": 200, "dt": 5e-3},
                    out=tmp_path / "x.nc")


@pytest.mark.parametrize("propulsion, potential, noise, kappa", [
    ("abp", "wca", "gaussian", 0.0), ("abp", "wca", "uniform", 5.0),
    ("aoup", "soft_harmonic", "gaussian", 0.0), ("abp", "soft_harmonic", "gaussian", 2.0)])
def test_serial_and_threaded_kernels_are_bit_identical(propulsion, potential, noise, kappa):
    """ABP with WCA threads by drawing the noise beside the force sum; ABP with another
    potential and AOUP thread the full-list kernel: all must give the serial bits."""
    numba = pytest.importorskip("numba")
    p = active.Params(n=1500, phi=0.5, potential=potential, v0=5.0, dt=1e-4,
                      propulsion=propulsion, D_t=0.1, noise=noise, kappa=kappa)
    names = ("positions", "image", "theta", "n_hat") if p.propulsion == "abp" else (
        "positions", "image", "g")
    results = []
    for threads, parallel in ((1, False), (numba.config.NUMBA_NUM_THREADS, True)):
        numba.set_num_threads(threads)
        st = active.init_state(p, 9)
        active.advance(st, p, kernel_key(9), 0, 400, parallel=parallel)
        results.append([st[name].tobytes() for name in names])
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert results[0] == results[1]


def test_threaded_blocks_combine_as_the_array_reductions_did():
    """The threaded integrations' per-block results (a plain loop since the reductions
    left the parallel functions): any unstable block flags the step, the largest
    displacement is np.max's (NaN if any block's is), 0 without blocks."""
    from simcore.models.active.integrate import _blocks_outcome

    unstable = np.zeros(1, dtype=np.int64)
    moved = np.array([0.3, 2.5, 1.0])
    assert _blocks_outcome(np.array([0, 0, 0]), moved, unstable) == 2.5 and unstable[0] == 0
    assert _blocks_outcome(np.array([0, 1, 0]), moved, unstable) == 2.5 and unstable[0] == 1
    for nan_at in range(3):
        with_nan = moved.copy()
        with_nan[nan_at] = np.nan
        assert math.isnan(_blocks_outcome(np.zeros(3, dtype=np.int64), with_nan, unstable))
        assert math.isnan(np.max(with_nan))
    assert _blocks_outcome(np.zeros(0, dtype=np.int64), np.zeros(0), unstable) == 0.0


def test_optional_force_and_drift_variables(tmp_path):
    out = simcore.run("abp", preset="trapped_abp", steps=20, write_every=10,
                      overrides={"n": 50, "write_force": True, "write_drift": True},
                      out=tmp_path / "fd.nc")
    with simcore.open_trajectory(out) as ds:
        p = ds.simcore.params
        x = ds["coordinates"].values[..., :2].astype(float)
        th = ds["theta"].values.astype(float)
        force = ds["force"].values[..., :2].astype(float)
        drift = ds["drift"].values[..., :2].astype(float)
        assert "velocities" not in ds  # the drift is not a velocity (issue 15)
    np.testing.assert_allclose(force, -p.kappa * (x - p.box / 2), rtol=1e-5, atol=1e-5)
    n = np.stack([np.cos(th), np.sin(th)], -1)
    np.testing.assert_allclose(drift, p.v0 * n + p.mu * force, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [1, 2024, 2025])
def test_boffi2023_preset_starts_from_its_overlapping_blob(seed):
    """Soft discs have bounded forces: the overlapping blob start must not be refused."""
    spec = {k: v for k, v in active.PRESETS["boffi2023"].items() if k not in ("steps", "write_every")}
    p = active.Params(**spec)
    state = active.init_state(p, seed)
    active.advance(state, p, kernel_key(seed), 0, 5)
    assert np.isfinite(state["positions"]).all()


def test_exact_epr_local_decomposes_the_hypoelliptic_total(tmp_path):
    """−μ∇_i·F_i: its particle mean is the frame's exact Σ̇_g (the blob start's deep
    overlaps make some terms k(σ_β − f_β/r) negative, so no sign is asserted), and it
    refuses a non-hypoelliptic file."""
    from simcore.analysis.active import exact_epr_local, exact_epr_per_frame

    out = tmp_path / "b.nc"
    simcore.run("abp", preset="boffi2023", steps=20, write_every=10, seed=3,
                overrides={"n": 300}, out=out, quiet=True)
    with simcore.open_trajectory(out) as ds:
        for k in range(ds.sizes["time"]):
            local = exact_epr_local(ds, k)
            assert local.shape == (300,) and np.all(np.isfinite(local))
            assert local.mean() == pytest.approx(exact_epr_per_frame(ds, [k])[0], rel=1e-12)
    free = tmp_path / "f.nc"
    simcore.run("abp", preset="free_abp", steps=2, write_every=1, seed=3, out=free, quiet=True)
    with simcore.open_trajectory(free) as ds, pytest.raises(simcore.UserInputError,
                                                            match="hypoelliptic"):
        exact_epr_local(ds, 0)


@pytest.mark.parametrize("system", [
    dict(potential="wca", phi=0.6, v0=24.0, D_t=0.24, D_r=0.72, dt=1e-4, init="lattice"),
    dict(propulsion="aoup", potential="soft_harmonic", phi=0.5, v0=0.1, gamma=1e-2, D_t=0.0,
         k=1.0, beta=7.5, radius=1.0, dt=0.005, init="uniform")])
def test_threaded_and_serial_verlet_forces_give_the_same_bits(system):
    """Threaded and serial runs give the same bits: for WCA both sum the forces over the
    flat half pair list and the threaded ABP integration runs the serial one's blocks
    across threads; the soft potential's threaded Verlet-list forces (each particle sums
    its full index-sorted list) add the serial half-list scatter's terms in its order:
    1500 steps (lists rebuilt many times, a renumbering at step 1000), threaded throughout
    or switching from serial after 500 steps (or serial, threaded, serial: the serial WCA
    kernel's flat pair list must not outlive a threaded rebuild), equal the serial run bit
    for bit."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    numba.set_num_threads(2)
    params = active.Params(n=2000, **system)
    key = kernel_key(11)
    runs = {}
    for name, plan in {"serial": [(0, 1500, False)], "threaded": [(0, 1500, True)],
                       "switch": [(0, 500, False), (500, 1000, True)],
                       "switch back": [(0, 300, False), (300, 400, True), (700, 800, False)]}.items():
        state = active.init_state(params, 11)
        for step, n, parallel in plan:
            active.advance(state, params, key, step, n, parallel=parallel)
        runs[name] = state
    f = active.forces(runs["serial"], params)[0]
    assert (np.abs(f).sum(1) > 0).mean() > 0.5  # most particles are in contact
    for name in ("threaded", "switch", "switch back"):
        for var in ("positions", "image", "theta" if "theta" in runs[name] else "g"):
            assert runs[name][var].tobytes() == runs["serial"][var].tobytes(), (name, var)


def test_serial_flat_pair_list_grows_when_too_short():
    """The serial WCA kernel's flat half pair list starts small and is enlarged when a
    rebuild needs more pairs; the run continues with the same bits."""
    params = active.Params(n=800, potential="wca", phi=0.6, v0=24.0, D_t=0.24, D_r=0.72,
                           dt=1e-4, init="lattice")
    key = kernel_key(5)
    runs = []
    for shrink in (False, True):
        state = active.init_state(params, 5)
        active.advance(state, params, key, 0, 200, parallel=False)
        if shrink:
            work = state["_work"]
            work["pi"] = np.zeros(3, dtype=np.int32)
            work["pj"] = np.zeros(3, dtype=np.int32)
            work["status"][active.ST_LISTS_VALID] = 0
        active.advance(state, params, key, 200, 300, parallel=False)
        runs.append(state)
    assert runs[1]["_work"]["pi"].shape[0] > 3
    for var in ("positions", "image", "theta"):
        assert runs[0][var].tobytes() == runs[1][var].tobytes(), var


@pytest.mark.parametrize("uniform_noise", [False, True])
def test_blocked_abp_integration_matches_the_particle_step(uniform_noise):
    """_integrate_abp_serial (hash, copy, update passes over blocks) gives the bits of
    _integrate_serial (_step_particle per particle), rare branches included: box wraps,
    angle wraps, angle steps >= 0.1 (sin/cos instead of the series), ziggurat rejections,
    a block boundary, non-finite forces, and the displacement it reports."""
    import importlib

    integ = importlib.import_module("simcore.models.active.integrate")
    rng_ = np.random.default_rng(3)
    n, L = 700, 9.0
    pos = np.zeros((n, 3))
    pos[:, :2] = rng_.random((n, 2)) * L
    pos[:20, 0] = L - 1e-9  # about to wrap
    pos[20:40, 1] = 1e-9
    theta = rng_.uniform(-np.pi, np.pi, n)
    theta[40:60] = np.pi - 1e-9
    g = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    force = rng_.normal(0.0, 30.0, (n, 2))
    force[60] = np.nan
    ids = rng_.permutation(n).astype(np.int64)
    ref = pos[:, :2] + rng_.normal(0.0, 0.1, (n, 2))
    image = np.zeros((n, 2), dtype=np.int64)
    key = np.uint64(kernel_key(4))
    # D_r dt = 2.5e-3: s_r = 0.07, so |Δθ| >= 0.1 in ~15 % of the draws
    args = (1e-3, 24.0, 1.0, 0.5, 2.5)  # dt, v0, mu, D_t, D_r
    states = []
    for kernel in ("generic", "blocked"):
        st = [pos.copy(), image.copy(), theta.copy(), g.copy()]
        unstable = np.zeros(1, dtype=np.int64)
        moved = []
        for step in range(30):
            if kernel == "generic":
                m = integ._integrate_serial(*st, force, L, *args, 0.0, True, uniform_noise,
                                            key, np.int64(step), 0.25, unstable, ids, ref, True)
            else:
                m = integ._integrate_abp_serial(*st, force, L, *args, uniform_noise, key,
                                                np.int64(step), 0.25, unstable, ids, ref, True)
            moved.append(m)
        states.append((st, unstable[0], moved))
    (a, ua, ma), (b, ub, mb) = states
    assert ua == ub == 1  # the NaN force
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()
    assert np.array_equal(np.array(ma), np.array(mb), equal_nan=True)


_SERIAL_AOUP_RUN = """
import importlib
import numpy as np
from simcore.models import active
forces = importlib.import_module("simcore.models.active.forces")  # (active.forces: a function)
integrate = importlib.import_module("simcore.models.active.integrate")
p = active.Params(n=600, propulsion="aoup", potential="none", phi=0.1)
state = active.init_state(p, 1)
active.advance(state, p, np.uint64(1), 0, 5)  # serial: fewer than 8192 free particles
active.frame(state, p)  # its forces on the loop's threads (threaded from 512 before)
compiled = {name: bool(getattr(module, name).signatures) for module, name in (
    (integrate, "_integrate_serial"), (integrate, "_integrate_parallel"),
    (integrate, "_integrate_abp_serial"), (integrate, "_integrate_abp_parallel"),
    (integrate, "_update_abp_parallel"), (forces, "_compute_forces_serial"),
    (forces, "_compute_forces_parallel"), (integrate, "_wca_forces_and_abp_noise"))}
print(sorted(name for name, done in compiled.items() if done))
"""


@pytest.mark.slow  # 22 s: a cold cache's compilation, which the check is about
def test_a_serial_aoup_run_compiles_only_its_own_kernels(tmp_path):
    """The step loop is compiled per (threads, propulsion): a serial AOUP run on a cold
    cache, its steps and a frame, compiles the serial AOUP integrator and the serial force
    sum, none of the threaded or ABP kernels (a loop typed with every path compiled them
    all: 78 s; a frame's forces, threaded from 512 particles, compiled the threaded sum)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    out = subprocess.run([sys.executable, "-c", _SERIAL_AOUP_RUN], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['_compute_forces_serial', '_integrate_serial']"
