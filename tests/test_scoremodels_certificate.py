"""The score-free certificate of `scoremodels epr` and the pinned g-score route
(issue 13): closed forms for the certificate of an exact and of a deliberately wrong
score, and acceptance (A), a trapped hypoelliptic AOUP at the MIPS ratios.

Tolerances: the certificate's numerator Σ̇_sq − 2Σ̇_div + Σ̇* is a sample mean; the
pure-NumPy tests use its per-sample standard deviation / √n (5 standard errors), the
end-to-end tests the block-bootstrap error that `scoremodels epr` writes (5 errors) plus
the Euler–Maruyama bias budget κ·dt (the data are the Euler chain, not the SDE: a trap's
chain has Σ̇_g = κ(1 − κdt/2) per dimension)."""

from __future__ import annotations

import json
import math

import netCDF4
import numpy as np
import pytest

import simcore
from scoremodels.cli import main
from scoremodels.epr import CERTIFICATE_THRESHOLD, certificate, estimate
from scoremodels.exact import ou_epr, rotational_ou, stationary_covariance
from scoremodels.train import TrainConfig, train

V0, GAMMA, KAPPA, DT = 0.025, 1e-4, 1.0, 0.01   # the MIPS ratios, dt·κ = 0.01


# ---------------------------------------------------------------------------- closed form
def _ou_forms(B, D, x, S):
    """Per-sample |v|² and divergence forms for the trial score s = S x of dx = −Bx dt +
    √(2D) dW: v = −Bx − D S x, ∇·v = −tr B − tr(D S), div form ∇·v + vᵀD⁻¹b."""
    Dinv = np.linalg.inv(D)
    b = -x @ B.T
    v = b - x @ (D @ S).T
    sq = np.einsum("ni,ij,nj->n", v, Dinv, v)
    div = -np.trace(B) - np.trace(D @ S) + np.einsum("ni,ij,nj->n", v, Dinv, b)
    return sq, div


@pytest.mark.parametrize("wrong", [False, True])
def test_certificate_closed_form_on_rotational_ou(wrong):
    """ε_v = 0 for the exact score; for s = s* + E x it is tr(Eᵀ D E C)/Σ̇* exactly."""
    B, D = rotational_ou(kappa=1.3, omega=0.7, T=0.5)
    C = stationary_covariance(B, D)
    exact = ou_epr(B, D)
    S_star = -np.linalg.inv(C)
    E = np.array([[0.8, -0.5], [0.3, 0.6]]) if wrong else np.zeros((2, 2))
    expected = float(np.trace(E.T @ D @ E @ C)) / exact
    x = np.random.default_rng(11).multivariate_normal(np.zeros(2), C, size=200_000)
    sq, div = _ou_forms(B, D, x, S_star + E)
    c = certificate(sq.mean(), div.mean(), exact)
    err = (sq - 2 * div).std() / math.sqrt(len(x)) / exact
    assert abs(c["eps_v"] - expected) < 5 * err, (c, expected, err)
    assert c["lower_bound"] <= exact + 5 * err * exact
    assert c["lower_bound_cs"] >= c["lower_bound"] - 1e-12
    if wrong:
        assert expected > 10 * err  # the wrong score is detectably wrong


def test_certificate_refuses_nothing_and_flags_threshold():
    assert certificate(1.0, 1.0, 1.0)["eps_v"] == 0.0
    assert certificate(1.0, 1.0, 1.0)["passed"]
    bad = certificate(1e-4, 1e-4, 2.66)      # the shipped MIPS map: ε_v ≈ 1
    assert bad["eps_v"] > 0.99 and not bad["passed"]
    assert math.isnan(certificate(1.0, 1.0, 0.0)["eps_v"])
    assert CERTIFICATE_THRESHOLD == 0.2


# ---------------------------------------------------------------------------- trapped AOUP
@pytest.fixture(scope="module")
def trap_file(tmp_path_factory):
    """1000 independent hypoelliptic AOUPs in a trap κ = 1 at the MIPS ratios (v0 = 0.025,
    γ = 1e-4, D_t = 0), dt = 0.01, 121 frames one time unit apart (float64): g starts at
    its stationary N(0, 1) and x relaxes in 1/κ, so the second half is stationary."""
    out = tmp_path_factory.mktemp("cert") / "trap.nc"
    simcore.run("abp", seed=5, steps=12000, write_every=100, out=out,
                overrides={"n": 1000, "phi": 0.01, "potential": "none", "propulsion": "aoup",
                           "v0": V0, "gamma": GAMMA, "D_t": 0.0, "kappa": KAPPA, "dt": DT,
                           "init": "uniform", "precision": "float64"})
    return out


def _pinned(trap_file, out, steps, lr):
    return train(trap_file, out, TrainConfig(size="pinned", sector="propulsion",
                                             objective="hyvarinen", steps=steps, lr=lr,
                                             batch_size=256, burn_in=0.5, neighbours=4,
                                             width=32, val_every=max(1, steps), seed=0))


@pytest.fixture(scope="module")
def exact_run(trap_file, tmp_path_factory):
    """The pinned network untrained (lr = 0): its linear-response score
    −(κ + γ) b_x/(γ v0) is the trap's exact s_g."""
    return _pinned(trap_file, tmp_path_factory.mktemp("cert") / "run0", 1, 0.0)


def test_certificate_end_to_end_exact_and_wrong_score(trap_file, exact_run, tmp_path, capsys):
    out = tmp_path / "epr.nc"
    rc = main(["epr", str(exact_run), str(trap_file), "-o", str(out), "--burn-in", "0.5",
               "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "score-free certificate eps_v" in text and "passed" in text
    # the sampled score-free total is named as such, the closed form printed beside it
    from scoremodels.exact import trapped_aoup_epr

    closed = trapped_aoup_epr(V0, 0.0, GAMMA, KAPPA, d=2, sector="g")
    assert "score-free (sampled on the same frames)" in text and "; exact" not in text
    assert f"closed form {closed:.6g} (trapped_aoup_epr, propulsion sector)" in text
    with netCDF4.Dataset(out) as nc:
        assert nc["epr_exact_total"].method == "sampled"
        assert float(nc["epr_closed_form"][...]) == closed
        eps, err = float(nc["epr_certificate"][...]), float(nc["epr_certificate_err"][...])
        assert nc["epr_certificate"].units == "1"
        assert nc["epr_lower_bound"].units == "1/time"
        assert float(nc["epr_exact_total"][...]) == pytest.approx(2 * KAPPA)
        assert nc.certificate_passed == "yes"
        lb = float(nc["epr_lower_bound"][...])
    assert abs(eps) < 5 * err + KAPPA * DT, (eps, err)
    assert lb < 2 * KAPPA * (1 + 5 * err + KAPPA * DT)

    # a deliberately wrong score: the trap stiffness in the network's linear response
    # set to cκ, i.e. s = m s* with m = (cκ + γ)/(κ + γ); closed form
    # ε_v = γ (m − 1)² E|s*|² / Σ̇* = (m − 1)² (κ + γ)/κ
    c = 1.3
    rec = json.loads((exact_run / "run.json").read_text())
    rec["net"]["extra"]["mu_kappa"] = c * KAPPA
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "run.json").write_text(json.dumps(rec))
    (wrong / "checkpoints").symlink_to(exact_run / "checkpoints")
    m = (c * KAPPA + GAMMA) / (KAPPA + GAMMA)
    expected = (m - 1) ** 2 * (KAPPA + GAMMA) / KAPPA
    r = estimate(wrong, [trap_file], tmp_path / "wrong.nc", burn_in=0.5)
    tol = 5 * r["epr_certificate_err"] + expected * 2 * KAPPA * DT
    assert abs(r["epr_certificate"] - expected) < tol, (r, expected)
    assert r["epr_certificate"] > 10 * r["epr_certificate_err"]
    assert r["epr_lower_bound"] < 2 * KAPPA * (1 + KAPPA * DT) + 5 * r["epr_lower_bound_err"]


def test_failed_certificate_warns(trap_file, exact_run, tmp_path, capsys):
    """A score far off (stiffness 4κ in the linear response: ε_v ≈ 9) is flagged on the
    terminal and in the file."""
    rec = json.loads((exact_run / "run.json").read_text())
    rec["net"]["extra"]["mu_kappa"] = 4 * KAPPA
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text(json.dumps(rec))
    (bad / "checkpoints").symlink_to(exact_run / "checkpoints")
    rc = main(["epr", str(bad), str(trap_file), "-o", str(tmp_path / "bad.nc"), "--burn-in",
               "0.5", "--quiet"])
    assert rc == 0
    cap = capsys.readouterr()
    assert "FAILED" in cap.out and "WARNING" in cap.err and "exact_epr_local" in cap.err
    with netCDF4.Dataset(tmp_path / "bad.nc") as nc:
        assert nc.certificate_passed == "no" and "not measurements" in nc.warning
        assert float(nc["epr_certificate"][...]) > CERTIFICATE_THRESHOLD


def test_acceptance_A_trapped_hypoelliptic_aoup_trained(trap_file, tmp_path):
    """(A): g-only Hyvärinen on the pinned network, 200 steps: both forms within 2 % of
    2κ and ε_v < 0.03 (dt·κ = 0.01: Euler bias −0.5 %)."""
    run = _pinned(trap_file, tmp_path / "run", 200, 1e-3)
    r = estimate(run, [trap_file], tmp_path / "epr.nc", burn_in=0.5)
    assert r["epr_total"] == pytest.approx(2 * KAPPA, rel=0.02), r
    assert r["epr_total_div"] == pytest.approx(2 * KAPPA, rel=0.02), r
    assert r["epr_certificate"] < 0.03, r


def test_pinned_network_refuses_non_aoup_files(tmp_path):
    from simcore import UserInputError

    abp = tmp_path / "abp.nc"
    simcore.run("abp", seed=1, steps=40, write_every=10, out=abp,
                overrides={"n": 16, "phi": 0.1, "potential": "none", "v0": 1.0, "D_t": 0.1,
                           "D_r": 0.5, "dt": 1e-2, "init": "uniform"})
    with pytest.raises(UserInputError, match="AOUP"):
        train(abp, tmp_path / "run", TrainConfig(size="pinned", sector="propulsion", steps=1))
    rc = main(["epr", str(tmp_path / "nowhere"), str(abp), "-o", str(tmp_path / "e.nc")])
    assert rc == 2
