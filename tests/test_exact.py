"""simcore.exact: closed forms against independent numerics (quadrature, Lyapunov solves,
finite differences, Monte Carlo)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.integrate import quad_vec
from scipy.linalg import expm

from simcore import exact


def random_system(d, seed, reversible=False):
    """A random stable B and positive definite D (B = D·S for a gradient system)."""
    g = np.random.default_rng(seed)
    R = g.normal(size=(d, d))
    D = R @ R.T / d + 0.3 * np.eye(d)
    if reversible:  # b = −D ∇U with U = xᵀ S x / 2
        R2 = g.normal(size=(d, d))
        return D @ (R2 @ R2.T / d + 0.5 * np.eye(d)), D
    G = g.normal(size=(d, d))
    B = G + (0.5 + np.abs(np.linalg.eigvals(G)).max()) * np.eye(d)
    assert np.linalg.eigvals(B).real.min() > 0
    return B, D


@pytest.mark.parametrize("d,seed", [(1, 0), (2, 1), (3, 2), (5, 3)])
def test_lyapunov_covariance_and_the_three_epr_forms(d, seed):
    B, D = random_system(d, seed)
    C = exact.stationary_covariance(B, D)
    # independent: C = ∫₀^∞ e^{−Bs} 2D e^{−Bᵀs} ds by adaptive quadrature, with
    # e^{−Bs} = V e^{−Λs} V⁻¹ from one eigen-decomposition (checked against expm)
    lam, V = np.linalg.eig(B)
    Vinv = np.linalg.inv(V)
    prop = lambda s: ((V * np.exp(-lam * s)) @ Vinv).real  # noqa: E731
    np.testing.assert_allclose(prop(0.7), expm(-0.7 * B), atol=1e-10)
    tail = 40.0 / lam.real.min()
    C_quad, _ = quad_vec(lambda s: prop(s) @ (2 * D) @ prop(s).T, 0, tail,
                         epsabs=1e-12, epsrel=1e-10)
    np.testing.assert_allclose(C, C_quad, rtol=1e-8, atol=1e-10 * np.abs(C).max())
    Cinv, Dinv = np.linalg.inv(C), np.linalg.inv(D)
    Q = B @ C - D
    np.testing.assert_allclose(Q, -Q.T, atol=1e-12 * np.abs(B @ C).max())
    assert math.isclose(np.trace(D @ Cinv), np.trace(B), rel_tol=1e-10)
    sigma = exact.ou_epr(B, D)
    form1 = np.trace(B.T @ Dinv @ B @ C) - np.trace(B)
    form2 = -np.trace(Dinv @ Q @ Cinv @ Q)
    assert math.isclose(sigma, form1, rel_tol=1e-10, abs_tol=1e-12)
    assert math.isclose(sigma, form2, rel_tol=1e-10, abs_tol=1e-12)
    if d > 1:
        assert sigma > 0.01  # a generic non-gradient B produces entropy
    np.testing.assert_allclose(exact.ou_flow_matrix(B, D), Q @ Cinv, atol=1e-10)


@pytest.mark.parametrize("d", [2, 4])
def test_reversible_system_has_zero_flow_and_zero_epr(d):
    B, D = random_system(d, 10 + d, reversible=True)
    assert abs(exact.ou_epr(B, D)) < 1e-10
    assert np.abs(exact.ou_flow_matrix(B, D)).max() < 1e-10


def test_flow_is_stationary_and_local_epr_averages_to_total():
    B, D = random_system(3, 7)
    C = exact.stationary_covariance(B, D)
    g = np.random.default_rng(0)
    x = g.normal(size=(50, 3)) * 2
    s = exact.ou_score(x, B, D)
    v = exact.ou_velocity(x, B, D)
    np.testing.assert_allclose(v, -x @ B.T - s @ D.T, atol=1e-12)
    # score by central differences of log N(0, C)
    def logp(y):
        return -0.5 * np.einsum("...i,ij,...j->...", y, np.linalg.inv(C), y)

    h = 1e-5
    eye = np.eye(3)
    s_fd = np.stack([(logp(x + h * eye[k]) - logp(x - h * eye[k])) / (2 * h) for k in range(3)], -1)
    np.testing.assert_allclose(s, s_fd, atol=1e-6)
    # stationary Fokker–Planck residual ρ⁻¹∇·(ρv) = ∇·v + v·s vanishes pointwise
    div_v = sum((exact.ou_velocity(x + h * eye[k], B, D)[:, k]
                 - exact.ou_velocity(x - h * eye[k], B, D)[:, k]) / (2 * h) for k in range(3))
    residual = div_v + (v * s).sum(-1)
    assert np.abs(residual).max() < 1e-6 * (1 + np.abs(v * s).sum(-1).max())
    # Monte Carlo: ⟨π(x)⟩ over x ~ N(0, C) is the total EPR
    samples = g.multivariate_normal(np.zeros(3), C, size=200_000)
    pi = exact.ou_local_epr(samples, B, D)
    err = pi.std() / math.sqrt(pi.size)
    assert abs(pi.mean() - exact.ou_epr(B, D)) < 5 * err


def test_rotational_ou_and_bead_spring_closed_forms():
    for T in (0.5, 1.0, 3.0):
        B, D = exact.rotational_ou(1.3, 0.7, T)
        assert math.isclose(exact.ou_epr(B, D), exact.rotational_ou_epr(1.3, 0.7, T),
                            rel_tol=1e-12)
    assert round(exact.rotational_ou_epr(1.3, 0.7), 6) == 0.753846
    for n, want in ((2, 2.025), (5, 0.629817279495)):
        assert math.isclose(exact.bead_spring_epr(n, 10.0, 1.0), want, rel_tol=1e-11)
        for T1, T2, k, gamma in ((10.0, 1.0, 1.0, 1.0), (2.0, 5.0, 0.7, 1.9)):
            B, D = exact.bead_spring(n, T1, T2, k, gamma)
            assert math.isclose(exact.ou_epr(B, D), exact.bead_spring_epr(n, T1, T2, k, gamma),
                                rel_tol=1e-11)
    assert exact.bead_spring_epr(5, 3.0, 3.0) == 0.0  # equal temperatures: equilibrium
    assert exact.bead_spring_epr(3, 10.0, 1.0) > 0


def test_trapped_aoup_against_lyapunov():
    v0, kappa, gamma, D_t = 0.8, 0.5, 0.3, 0.2
    B = np.array([[kappa, -v0], [0.0, gamma]])
    np.testing.assert_allclose(exact.trapped_aoup_covariance(v0, D_t, gamma, kappa),
                               exact.stationary_covariance(B, np.diag([D_t, gamma])),
                               rtol=1e-12)
    assert math.isclose(exact.trapped_aoup_epr(v0, D_t, gamma, kappa), 1.2, rel_tol=1e-12)
    assert math.isclose(exact.ou_epr(B, np.diag([D_t, gamma])), 1.2, rel_tol=1e-10)
    assert math.isclose(exact.trapped_aoup_epr(v0, D_t, gamma, kappa, d=2), 2.4, rel_tol=1e-12)
    # hypoelliptic: the full all-even EPR is infinite, the g-sector one is κ
    D0 = np.diag([0.0, gamma])
    assert exact.ou_epr(B, D0) == math.inf
    assert exact.trapped_aoup_epr(v0, 0.0, gamma, kappa) == math.inf
    assert math.isclose(exact.ou_epr(B, D0, coordinates=[1]), kappa, rel_tol=1e-10)
    assert exact.trapped_aoup_epr(v0, 0.0, gamma, kappa, sector="g") == kappa
    assert abs(exact.trapped_aoup_epr(v0, 1e-3, gamma, kappa, sector="g") - 0.49834) < 1e-5
    assert exact.trapped_aoup_epr(0.0, 0.2, gamma, kappa) == 0.0


def test_trapped_abp_against_monte_carlo():
    """Euler–Maruyama ensemble of independent 2D trapped ABPs (numpy, seeded)."""
    v0, D_t, D_r, kappa = 1.0, 0.25, 0.4, 0.7
    want = exact.trapped_abp_epr(v0, D_t, D_r, kappa)
    assert round(want, 6) == 1.454545
    g = np.random.default_rng(42)
    m, dt = 20_000, 0.01
    x = np.zeros((m, 2))
    th = g.uniform(-np.pi, np.pi, m)
    snaps = []
    for step in range(1, 1001):  # t = 10 (≥ 7 relaxation times 1/κ), snapshots every 0.5
        n = np.stack([np.cos(th), np.sin(th)], -1)
        x += (v0 * n - kappa * x) * dt + math.sqrt(2 * D_t * dt) * g.normal(size=(m, 2))
        th += math.sqrt(2 * D_r * dt) * g.normal(size=m)
        if step > 600 and step % 50 == 0:
            n = np.stack([np.cos(th), np.sin(th)], -1)
            snaps.append(((n * x).sum(-1), (x * x).sum(-1),
                          ((v0 * n - kappa * x) ** 2).sum(-1) / D_t - 2 * kappa))
    mom = exact.trapped_abp_moments(v0, D_t, D_r, kappa)
    # particles are independent: errors from the spread of per-particle snapshot means;
    # the EM bias is O(κ dt) ≈ 1 %, allowed for explicitly
    for k, target in enumerate((mom["n_dot_x"], mom["x2"], want)):
        per_particle = np.mean([s[k] for s in snaps], axis=0)
        err = per_particle.std(ddof=1) / math.sqrt(m)
        assert abs(per_particle.mean() - target) < 5 * err + 0.01 * abs(target), (k, target)
    assert exact.trapped_abp_epr(v0, 0.0, D_r, kappa) == math.inf
    assert exact.trapped_abp_epr(0.0, D_t, D_r, kappa) == 0.0
    # the 3D formula reduces consistently: d = 3 doubles the rotational rate
    assert math.isclose(exact.trapped_abp_epr(v0, D_t, D_r, kappa, d=3),
                        v0 ** 2 / D_t * 2 * D_r / (kappa + 2 * D_r))


def fokker_planck_ring(f, D, U0, n=2000):
    """Independent solution: conservative finite volumes on a periodic grid → (θ faces, ρ, J)."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    h = 2 * np.pi / n
    theta = h * np.arange(n)
    face = theta + h / 2
    F = f + U0 * np.sin(face)  # f − U'(θ) with U = U0 cos θ
    A = lil_matrix((n + 1, n + 1))
    rhs = np.zeros(n + 1)
    for i in range(n):  # flux through face i+1/2 equals the unknown constant J
        j = (i + 1) % n
        A[i, i] += F[i] / 2 + D / h
        A[i, j] += F[i] / 2 - D / h
        A[i, n] = -1.0
    A[n, :n] = h
    rhs[n] = 1.0
    sol = spsolve(A.tocsr(), rhs)
    rho, J = sol[:n], sol[n]
    rho_face = 0.5 * (rho + np.roll(rho, -1))
    return theta, rho, J, float(np.sum(J ** 2 / (D * rho_face)) * h)


def test_ring_against_fokker_planck_finite_volumes():
    f, D, U0 = 1.3, 0.7, 2.0
    J = exact.ring_current(f, D, U0)
    assert abs(J - 0.063030) < 1e-6
    assert abs(exact.ring_epr(f, D, U0) - 0.735487) < 1e-6
    theta, rho, J_fd, epr_fd = fokker_planck_ring(f, D, U0)
    assert math.isclose(J, J_fd, rel_tol=1e-4)
    assert math.isclose(exact.ring_epr(f, D, U0), epr_fd, rel_tol=1e-4)
    np.testing.assert_allclose(exact.ring_density(theta, f, D, U0), rho, rtol=1e-4)
    # U = 0: uniform density, J = f/2π, Σ̇ = f²/D; a callable potential gives the same
    assert math.isclose(exact.ring_epr(f, D), f ** 2 / D, rel_tol=1e-12)
    np.testing.assert_allclose(exact.ring_density([0.0, 1.0], f, D), 1 / (2 * np.pi), rtol=1e-12)
    assert math.isclose(exact.ring_epr(f, D, potential=lambda t: U0 * np.cos(t)),
                        exact.ring_epr(f, D, U0), rel_tol=1e-13)
    assert abs(exact.ring_epr(0.0, D, U0)) < 1e-15  # no torque: equilibrium


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="positive real part"):
        exact.ou_epr([[-1.0, 0.0], [0.0, 1.0]], np.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        exact.ou_epr(np.eye(2), [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="semi-definite"):
        exact.stationary_covariance(np.eye(2), [[1.0, 0.0], [0.0, -1.0]])
    with pytest.raises(ValueError, match="shape"):
        exact.ou_epr(np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        exact.ou_epr(np.eye(2), np.diag([1.0, 0.0]))  # x_2 never moves: no density


def test_exact_does_not_import_jax():
    code = "import sys, simcore.exact; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_closed_form_epr_of_a_files_system():
    """`scoremodels epr` prints the closed form where one exists: trapped non-interacting
    ABP/AOUP (trap rate μκ) and the linear model; none for interacting particles, no
    trap, or a sector without a closed form."""
    import simcore
    from scoremodels.adapters import linear_adapter
    from scoremodels.adapters import particle_adapter as _active_adapter
    from scoremodels.certificate import closed_form_epr

    p = simcore.presets("abp")["trapped_abp"].model_dump()
    value, how = closed_form_epr(_active_adapter(p), "full")
    assert how == "trapped_abp_epr"
    assert value == exact.trapped_abp_epr(p["v0"], p["D_t"], p["D_r"], p["mu"] * p["kappa"])
    stiff = _active_adapter({**p, "mu": 2 * p["mu"]})
    assert closed_form_epr(stiff, "full")[0] == exact.trapped_abp_epr(
        p["v0"], p["D_t"], p["D_r"], 2 * p["mu"] * p["kappa"])
    assert closed_form_epr(_active_adapter({**p, "potential": "wca"}), "full") is None
    assert closed_form_epr(_active_adapter({**p, "kappa": 0.0}), "full") is None
    assert closed_form_epr(_active_adapter(p), "propulsion") is None  # ABP θ sector
    aoup = _active_adapter({**p, "propulsion": "aoup", "gamma": 0.3})
    assert closed_form_epr(aoup, "full")[0] == exact.trapped_aoup_epr(
        p["v0"], p["D_t"], 0.3, p["mu"] * p["kappa"], d=2)
    assert closed_form_epr(aoup, "propulsion")[0] == exact.trapped_aoup_epr(
        p["v0"], p["D_t"], 0.3, p["mu"] * p["kappa"], d=2, sector="g")
    ou = simcore.presets("linear")["rotational_ou"].model_dump()
    lin = linear_adapter(ou, 10)
    assert closed_form_epr(lin, "full")[0] == exact.ou_epr(np.asarray(ou["B"]), np.asarray(ou["D"]))
    assert closed_form_epr(lin, "propulsion") is None
