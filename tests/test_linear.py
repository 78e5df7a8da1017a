"""The linear SDE engine (`simcore run linear`): exact transitions, stationary statistics and EPR
from saved trajectories, file layout, reproducibility, resume, CLI and input errors."""

from __future__ import annotations

import math

import netCDF4
import numpy as np
import pytest
from scipy.linalg import expm, solve_discrete_lyapunov

import simcore
from simcore.config import resolve
from simcore.models import linear
from simcore.rng import kernel_key

from conftest import assert_one_paragraph, run_cli, run_cli_here
from simcore import exact


def preset_params(name, **kw):
    spec = {k: v for k, v in linear.PRESETS[name].items() if k not in ("steps", "write_every")}
    return linear.Params(**{**spec, **kw})


def copy_mean(samples):
    """samples (T, n): mean and standard error from the n independent copies' time means."""
    per_copy = samples.mean(0)
    return per_copy.mean(), per_copy.std(ddof=1) / math.sqrt(per_copy.size)


@pytest.mark.parametrize("name", list(linear.PRESETS))
def test_presets_match_the_reference_systems(name):
    p = preset_params(name)
    if name == "rotational_ou":
        B, D = exact.rotational_ou(1.3, 0.7, 1.0)
        want = 0.753846
    else:
        B, D = exact.bead_spring(5, 10.0, 1.0)
        want = 0.629817279495
    np.testing.assert_array_equal(p.B_matrix, B)
    np.testing.assert_array_equal(p.D_matrix, D)
    assert abs(exact.ou_epr(B, D) - want) < 1e-6
    assert linear.DEFAULT_PRESET in linear.PRESETS


@pytest.mark.parametrize("dt", [0.01, 0.7])
def test_exact_transition_preserves_the_stationary_law(dt):
    for name in linear.PRESETS:
        p = preset_params(name, dt=dt)
        A, F = linear.transition(p)
        C = exact.stationary_covariance(p.B_matrix, p.D_matrix)
        np.testing.assert_allclose(A, expm(-p.B_matrix * dt), atol=1e-13)
        np.testing.assert_allclose(A @ C @ A.T + F @ F.T, C, atol=1e-12 * np.abs(C).max())
    p = preset_params("rotational_ou", dt=0.05, integrator="euler")
    A, F = linear.transition(p)
    np.testing.assert_allclose(A, np.eye(2) - 0.05 * p.B_matrix)
    np.testing.assert_allclose(F @ F.T, 0.1 * p.D_matrix)
    # a singular D (noise on one coordinate only) still has a factor
    q = linear.Params(B=[[1.0, -1.0], [0.0, 2.0]], D=[[0.0, 0.0], [0.0, 1.0]])
    A, F = linear.transition(q)
    C = exact.stationary_covariance(q.B_matrix, q.D_matrix)
    np.testing.assert_allclose(A @ C @ A.T + F @ F.T, C, atol=1e-12)


@pytest.fixture(scope="module")
def bead_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("linear") / "bead.nc"
    simcore.run("linear", preset="bead_spring_5", steps=3000, write_every=30, seed=11,
                overrides={"n": 2000, "precision": "float64"}, out=out, quiet=True)
    return out


def test_saved_trajectory_has_the_stationary_covariance_and_epr(bead_run):
    with simcore.open_trajectory(bead_run) as ds:
        p = ds.simcore.params
        x = ds["x"].values
        drift = ds["drift"].values
        diag = ds.simcore.analyze()
    B, D = p.B_matrix, p.D_matrix
    C = exact.stationary_covariance(B, D)
    # copies are independent: the spread of their time averages gives exact error bars;
    # 5 sigma for each of the 15 distinct entries
    for i in range(5):
        for j in range(i, 5):
            m, err = copy_mean(x[:, :, i] * x[:, :, j])
            assert abs(m - C[i, j]) < 5 * err, (i, j, m, C[i, j], err)
    # EPR from the saved states with the exact score: v = −Bx + D C⁻¹ x, Σ̇ = ⟨vᵀD⁻¹v⟩
    v = -x @ B.T + x @ np.linalg.inv(C) @ D.T
    m, err = copy_mean(np.einsum("tai,ij,taj->ta", v, np.linalg.inv(D), v))
    want = exact.ou_epr(B, D)
    assert abs(m - want) < 5 * err, (m, want, err)
    assert err < 0.05 * want  # the check has teeth
    # the stored drift is −Bx, and `simcore analyze` reports a consistent score-free EPR
    np.testing.assert_allclose(drift, -x @ B.T, rtol=1e-12, atol=1e-12)
    assert abs(float(diag["epr"]) - want) < 5 * float(diag["epr_err"])
    assert abs(float(diag["epr_exact"]) - want) < 1e-12
    assert diag["epr_exact"].attrs["method"] == "closed form"
    assert float(diag["covariance_max_z"]) < 5
    np.testing.assert_allclose(diag["covariance_exact"].values, C)


def test_time_lagged_correlation_follows_the_propagator(bead_run):
    """⟨x(t+τ) x(t)ᵀ⟩ = e^{−Bτ} C: checks the dynamics, not only the stationary law."""
    with simcore.open_trajectory(bead_run) as ds:
        p = ds.simcore.params
        x = ds["x"].values
        tau = float(ds["time"].values[1] - ds["time"].values[0])
    C = exact.stationary_covariance(p.B_matrix, p.D_matrix)
    want = expm(-p.B_matrix * tau) @ C
    for i in range(5):
        for j in range(5):
            m, err = copy_mean(x[1:, :, i] * x[:-1, :, j])
            assert abs(m - want[i, j]) < 5 * err, (i, j, m, want[i, j], err)
    # (the direction of time/rotation is resolved by test_kernel_rotates_the_right_way)


def test_kernel_rotates_the_right_way():
    """Rotational OU from N(0, C): ⟨x(τ) x(0)ᵀ⟩ = e^{−Bτ} C = (T/κ) e^{−κτ} R(ωτ)ᵀ differs
    from its transpose, so a kernel rotating the wrong way (e^{−Bᵀτ}) would fail."""
    p = preset_params("rotational_ou", n=20000)
    st = linear.init_state(p, 5)
    x0 = st["x"].copy()
    linear.advance(st, p, kernel_key(5), 0, 100)  # τ = 1
    want = expm(-p.B_matrix * 1.0) @ exact.stationary_covariance(p.B_matrix, p.D_matrix)
    for i in range(2):
        for j in range(2):
            prod = st["x"][:, i] * x0[:, j]
            err = prod.std(ddof=1) / math.sqrt(prod.size)
            assert abs(prod.mean() - want[i, j]) < 5 * err
            assert abs(prod.mean() - want[j, i]) > 5 * err or i == j


def test_file_layout(tmp_path):
    out = simcore.run("linear", preset="bead_spring_5", steps=20, write_every=10,
                      overrides={"n": 7}, out=tmp_path / "l5.nc", quiet=True)
    out2 = simcore.run("linear", preset="rotational_ou", steps=20, write_every=10,
                       overrides={"n": 7}, format="amber", out=tmp_path / "l2.nc", quiet=True)
    for path, d in ((out, 5), (out2, 2)):
        with netCDF4.Dataset(path) as nc:
            assert nc.dimensions["component"].size == d
            assert nc["x"].dimensions == ("frame", "atom", "component")
            assert nc["drift"].dimensions == ("frame", "atom", "component")
            x, coords = nc["x"][:], nc["coordinates"][:]
            m = min(d, 3)
            np.testing.assert_array_equal(coords[..., :m], x[..., :m])
            assert np.all(coords[..., m:] == 0)
            assert "velocities" not in nc.variables  # an OU path has no velocity (issue 15)
            if nc.file_format == "NETCDF4":
                assert np.all(nc["cell_lengths"][:] == 0)
            else:  # AMBER convention: no periodic axis, no cell variables
                assert "cell_lengths" not in nc.variables
            assert nc.simcore_model == "linear"


def test_relaxation_from_zero_and_euler_bias(tmp_path):
    """init = zero: tr C(t) = (2T/κ)(1 − e^{−2κt}); Euler–Maruyama reaches the discrete
    Lyapunov covariance (biased by O(dt)), not the continuous one."""
    out = simcore.run("linear", preset="rotational_ou", steps=150, write_every=10, seed=2,
                      overrides={"n": 4000, "init": "zero", "precision": "float64"},
                      out=tmp_path / "z.nc", quiet=True)
    with simcore.open_trajectory(out) as ds:
        t = ds["time"].values
        r2 = (ds["x"].values ** 2).sum(-1)  # (T, n)
    want = 2 / 1.3 * (1 - np.exp(-2 * 1.3 * t))
    err = r2.std(1, ddof=1) / math.sqrt(r2.shape[1])
    assert r2[0].max() == 0
    assert np.all(np.abs(r2.mean(1)[1:] - want[1:]) < 5 * err[1:])

    dt = 0.15
    p = preset_params("rotational_ou", dt=dt, integrator="euler", n=4000)
    st = linear.init_state(p, 3)
    A, F = linear.transition(p)
    C_em = solve_discrete_lyapunov(A, F @ F.T)
    C = exact.stationary_covariance(p.B_matrix, p.D_matrix)
    assert abs(C_em[0, 0] - C[0, 0]) > 0.05 * C[0, 0]  # the bias is visible
    samples = []
    linear.advance(st, p, kernel_key(3), 0, 40)  # relax from N(0, C) to N(0, C_em)
    for k in range(20):
        linear.advance(st, p, kernel_key(3), 40 + 10 * k, 10)
        samples.append(st["x"].copy())
    x = np.array(samples)
    m, err = copy_mean((x ** 2).sum(-1))
    assert abs(m - np.trace(C_em)) < 5 * err
    assert abs(m - np.trace(C)) > 5 * err


def test_serial_and_threaded_kernels_are_bit_identical():
    numba = pytest.importorskip("numba")
    p = preset_params("bead_spring_5", n=301)
    results = []
    for threads, parallel in ((1, False), (numba.config.NUMBA_NUM_THREADS, True)):
        numba.set_num_threads(threads)
        st = linear.init_state(p, 9)
        linear.advance(st, p, kernel_key(9), 0, 37, parallel=parallel)
        linear.advance(st, p, kernel_key(9), 37, 13, parallel=parallel)
        results.append(st["x"].tobytes())
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert results[0] == results[1]


def test_cli_run_and_analyze(tmp_path):
    out = tmp_path / "rot.nc"
    run_cli("run", "linear", "--preset", "rotational_ou", "--steps", "200", "--write-every",
            "20", "--set", "n=200", "--quiet", "-o", out, check_rc=0)
    proc = run_cli("analyze", out, check_rc=0)
    assert "epr_exact" in proc.stdout and "0.7538" in proc.stdout


@pytest.mark.parametrize("B,D,message", [
    ("[[1.0, 0.0], [0.0, -0.5]]", "[[1.0, 0.0], [0.0, 1.0]]", "positive real part"),
    ("[[1.0, 0.0], [0.0, 1.0]]", "[[1.0, 0.3], [0.0, 1.0]]", "symmetric"),
    ("[[1.0, 0.0], [0.0, 1.0]]", "[[1.0, 0.0], [0.0, -1.0]]", "positive semi-definite"),
    ("[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]", "[[1.0, 0.0], [0.0, 1.0]]",
     "same size"),
    ("[[1.0, 0.0]]", "[[1.0, 0.0], [0.0, 1.0]]", "square"),
])
def test_bad_matrices_are_clear_errors(B, D, message):
    with pytest.raises(simcore.UserInputError, match=message):
        resolve("linear", overrides=[f"B={B}", f"D={D}"])


def test_cli_bad_matrix_exits_2(tmp_path, capsys):
    proc = run_cli_here(capsys, "run", "linear", "--set", "B=[[1.0, 2.0], [0.0, -1.0]]",
                        "--steps", "10", "-o", tmp_path / "bad.nc")
    assert_one_paragraph(proc, "positive real part")
    assert not (tmp_path / "bad.nc").exists()
    proc = run_cli_here(capsys, "run", "linear", "--set", "integrator=euler", "--set", "dt=2.0",
                        "--steps", "10", "-o", tmp_path / "bad2.nc")
    assert_one_paragraph(proc, "unstable")
