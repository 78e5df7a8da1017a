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
from scoremodels.certificate import CERTIFICATE_THRESHOLD, certificate
from scoremodels.epr import estimate
from simcore.exact import ou_epr, rotational_ou, stationary_covariance
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
    from simcore.exact import trapped_aoup_epr

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


# ---------------------------------------------------------------------------- (B) network
def _diluted_lattice(side=8, p_bond=0.7, tether=0.5, seed=3):
    """A = μ × Hessian (μ = 1, 1/time) of a harmonic network on a periodic side × side
    square lattice: every particle tethered with stiffness ``tether``, each lattice bond
    kept with probability ``p_bond`` with a stiffness uniform in [0.5, 1.5] (zero rest
    length, so exactly harmonic). Heterogeneous: tr A_ii = 2(tether + Σ_j k_ij)."""
    g = np.random.default_rng(seed)
    n = side * side
    lap = np.zeros((n, n))
    for i in range(n):
        x, y = divmod(i, side)
        for j in (((x + 1) % side) * side + y, x * side + (y + 1) % side):
            if g.random() < p_bond:
                k = g.uniform(0.5, 1.5)
                lap[i, j] = lap[j, i] = -k
    lap -= np.diag(lap.sum(1))
    return np.kron(tether * np.eye(n) + lap, np.eye(2))


NET_V0, NET_GAMMA, NET_COPIES = 1.0, 1e-3, 512


def test_network_closed_form_per_particle():
    """The closed forms of (B), by the Lyapunov solution (no sampling): the exact
    g-score's local EPR γ⁻¹E|v_g,i|² has per-particle mean tr A_ii and total tr A; the
    particle view recognises exactly this structure."""
    from scoremodels import network
    from simcore.exact import ou_flow_matrix

    A = _diluted_lattice()
    B, D = network.aoup_network(A, NET_V0, NET_GAMMA)
    C, M = stationary_covariance(B, D), ou_flow_matrix(B, D)
    n2 = len(A)
    V = M[n2:] @ C @ M[n2:].T / NET_GAMMA
    per = np.trace(V.reshape(n2 // 2, 2, n2 // 2, 2)[np.arange(n2 // 2), :, np.arange(n2 // 2)],
                   axis1=1, axis2=2)
    A_ii = np.trace(A.reshape(n2 // 2, 2, n2 // 2, 2)[np.arange(n2 // 2), :, np.arange(n2 // 2)],
                    axis1=1, axis2=2)
    assert np.allclose(per, A_ii, rtol=1e-8)
    assert ou_epr(B, D, coordinates=range(n2, 2 * n2)) == pytest.approx(np.trace(A), rel=1e-8)
    assert A_ii.max() > 2 * A_ii.min()  # heterogeneous: the per-particle test means something
    info = network.detect({"B": B.tolist(), "D": D.tolist()})
    assert info["n_particles"] == n2 // 2 and info["v0"] == NET_V0
    assert np.allclose(network.exact_epr_per_particle(
        {"B": B.tolist(), "network_particles": n2 // 2}), A_ii)
    B2 = B.copy()
    B2[n2, 0] = 1e-3  # g driven by x: not an AOUP network
    assert network.detect({"B": B2.tolist(), "D": D.tolist()}) is None


@pytest.fixture(scope="module")
def network_file(tmp_path_factory):
    """512 independent copies of the 64-particle network (4·64 = 256 components), exact
    transition sampling from the exact stationary state (no burn-in, no Euler bias):
    dt = 1 (dt·max eig A = 8; at dt·max eig ≳ 40 the exact transition's noise covariance
    loses the 1e-3 pinning variance to round-off), 6 frames 2 time units apart."""
    from scoremodels.network import aoup_network

    A = _diluted_lattice()
    B, D = aoup_network(A, NET_V0, NET_GAMMA)
    out = tmp_path_factory.mktemp("net") / "net.nc"
    simcore.run("linear", seed=7, steps=10, write_every=2, out=out,
                overrides={"B": B.tolist(), "D": D.tolist(), "n": NET_COPIES, "dt": 1.0,
                           "precision": "float64"})
    return out, A


def _assert_network_epr(run, path, A, tmp_path):
    """Both totals within 3 % of tr A / N, the certificate below 0.03, and every
    particle's mean local EPR, both forms, within 10 % of tr A_ii (closed form from A, not
    from the network). The statistics resolve both: the totals' block-bootstrap errors are
    below 1 %, and every particle's standard error (over the 512 independent copies) is
    below 10 %/3.5, so that an exact score would fail the 10 % with probability
    < 64 × 5e-4."""
    r = estimate(run, [path], tmp_path / "epr.nc", burn_in=0.0)
    n2 = len(A)
    N = n2 // 2
    A_ii = np.trace(A.reshape(N, 2, N, 2)[np.arange(N), :, np.arange(N)], axis1=1, axis2=2)
    exact = A_ii.mean()
    assert r["epr_exact_total"] == pytest.approx(exact, rel=1e-12)
    for key in ("epr_total", "epr_total_div"):
        assert r[key + "_err"] < 0.01 * exact, r
        assert r[key] == pytest.approx(exact, rel=0.03), r
    assert r["epr_certificate"] < 0.03 + 5 * r["epr_certificate_err"], r
    with netCDF4.Dataset(tmp_path / "epr.nc") as nc:
        forms = [np.asarray(nc[v][:], float) for v in ("epr_local", "epr_local_div")]
    for loc in forms:
        per_copy = loc.reshape(loc.shape[0], NET_COPIES, N).mean(0)   # (copies, particle)
        mean = per_copy.mean(0)
        se = per_copy.std(0, ddof=1) / math.sqrt(NET_COPIES)
        assert np.all(se < 0.10 / 3.5 * A_ii), (se / A_ii).max()
        assert np.all(np.abs(mean / A_ii - 1) < 0.10), np.abs(mean / A_ii - 1).max()
        print(f"per-particle: max |mean/A_ii - 1| = {np.abs(mean / A_ii - 1).max():.4f}, "
              f"max se/A_ii = {(se / A_ii).max():.4f}")
    print({k: r[k] for k in ("epr_total", "epr_total_err", "epr_total_div", "epr_total_div_err",
                              "epr_exact_total", "epr_certificate", "epr_certificate_err")})


def test_network_epr_per_particle_after_a_short_training(network_file, augmented_run,
                                                          tmp_path):
    """(B)'s estimate and per-particle check on the run of 3 augmented steps (its
    parameters moved off the linear-response start: the test below): the default tier's
    twin of the 300-step acceptance, which is slow."""
    path, A = network_file
    _assert_network_epr(augmented_run, path, A, tmp_path)


@pytest.mark.slow  # 40-70 s on 2 cores: 300 training steps; the twin above is the fast tier's
def test_acceptance_B_harmonic_network_trained(network_file, tmp_path):
    """(B): a heterogeneous harmonic network of 64 hypoelliptic AOUPs (γ = 1e-3), the
    pinned network trained 300 Hyvärinen steps (lr 3e-3, which moves its corrections off
    zero, checked): the totals, certificate and per-particle local EPRs of
    :func:`_assert_network_epr`."""
    import jax.numpy as jnp

    from scoremodels.data import TrajectorySet, frame_samples
    from scoremodels.losses import _ctx
    from scoremodels.rundir import load_run

    path, A = network_file
    run = train(path, tmp_path / "run", TrainConfig(size="pinned", steps=300, lr=3e-3,
                                                    batch_size=256, burn_in=0.0,
                                                    val_every=300, seed=0))
    _assert_network_epr(run, path, A, tmp_path)

    # training moved the network: its score differs from the linear-response start
    model, rec = load_run(run)
    with TrajectorySet([path]) as ts:
        smp = frame_samples(ts.read([0]), ts.adapter, rec["net"]["neighbours"], None)
    b = {k: jnp.asarray(v[:2048]) for k, v in smp.items()}
    s = np.asarray(model(b["y"], _ctx(b), jnp.zeros(2048)))
    s_lr = np.asarray(model.parts(b["y"], _ctx(b))[0])
    moved = np.sqrt(((s - s_lr) ** 2).mean() / (s_lr ** 2).mean())
    assert moved > 1e-4, moved


def test_square_symmetries_map_the_pinned_score_exactly(network_file, tmp_path):
    """`augment = "square"` maps every sample by one of the 8 symmetries R of the square:
    the linear-response score (soft discs: Hessians from the rotated displacements;
    network: the rotated stiffness blocks R H Rᵀ, and the neighbours' drifts) maps as
    s → R s, so the untrained network's Hyvärinen loss is unchanged; a transformation
    that forgot the neighbours' drifts would change both."""
    import jax
    import jax.numpy as jnp

    from scoremodels.data import TrajectorySet, frame_samples
    from scoremodels.losses import (Objective, _ctx, _rotation, make_loss,
                                    orthogonal_batch, square_symmetry_batch)
    from scoremodels.nets import build
    from scoremodels.train import _set_scales, resolve

    discs = tmp_path / "discs.nc"
    simcore.run("abp", seed=3, steps=400, write_every=200, out=discs,
                overrides={"n": 64, "phi": 0.5, "potential": "soft_harmonic",
                           "propulsion": "aoup", "v0": 0.1, "gamma": 1e-2, "D_t": 0.0,
                           "dt": 0.005, "init": "uniform", "precision": "float64"})
    for path in (discs, network_file[0]):
        with TrajectorySet([path]) as ts:
            cfg = TrainConfig(size="pinned", neighbours=8, cutoff=3.0 if path == discs else None)
            net, dims, _, _ = resolve(ts, cfg)
            smp = frame_samples(ts.read([len(ts) - 1]), ts.adapter, 8, net.cutoff)
        batch = {k: jnp.asarray(v[:256]) for k, v in smp.items()}
        _set_scales(net, smp)
        model = build(net)
        ls = jnp.zeros(len(batch["y"]))
        lr_score = jax.jit(lambda b, m=model: m.parts(b["y"], _ctx(b))[0])
        hyv = make_loss(Objective(kind="hyvarinen"), dims, "vector")
        loss = jax.jit(lambda b, m=model, f=hyv: f(m, b, jax.random.key(0)))
        s0 = np.asarray(lr_score(batch), float)
        l0 = float(loss(batch))
        for m in range(8):
            a = jnp.full(len(ls), (m % 4) * np.pi / 2, jnp.float32)
            flip = jnp.full(len(ls), float(m // 4), jnp.float32)
            R = jnp.round(_rotation(a, flip))
            tb = orthogonal_batch(batch, R, flip, a, "vector")
            s1 = np.asarray(lr_score(tb), float)
            assert np.allclose(s1, np.einsum("bij,bj->bi", np.asarray(R), s0), rtol=1e-4,
                               atol=1e-4 * np.abs(s0).max())
            assert float(loss(tb)) == pytest.approx(l0, rel=1e-4)
        # the neighbours' drifts matter: leaving them unrotated breaks the symmetry
        R = jnp.round(_rotation(jnp.full(len(ls), np.pi / 2, jnp.float32), jnp.zeros(len(ls))))
        wrong = dict(orthogonal_batch(batch, R, jnp.zeros(len(ls)), jnp.zeros(len(ls)), "vector"),
                     nb_bx=batch["nb_bx"])
        s_wrong = np.asarray(lr_score(wrong), float)
        assert not np.allclose(s_wrong, np.einsum("bij,bj->bi", np.asarray(R), s0), rtol=1e-2)
        aug = square_symmetry_batch(batch, jax.random.key(1), "vector")
        assert float(loss(aug)) == pytest.approx(l0, rel=1e-4)


def test_network_view_refusals(network_file, tmp_path):
    """A network file needs the pinned network and enough neighbours for every spring;
    its all-variables EPR (noiseless positions) is refused like any hypoelliptic file."""
    from simcore import UserInputError

    path, _ = network_file
    with pytest.raises(UserInputError, match="springs"):
        train(path, tmp_path / "r1", TrainConfig(size="pinned", neighbours=2, steps=1))
    with pytest.raises(UserInputError, match="pinned"):
        train(path, tmp_path / "r2", TrainConfig(size="small", steps=1))
    with pytest.raises(UserInputError, match="noiseless"):
        train(path, tmp_path / "r3", TrainConfig(size="pinned", sector="full", steps=1))


def _augmented_run(path, out):
    """The pinned network trained 3 steps with ``augment = "square"`` (lr 3e-3, seed 0)."""
    return train(path, out, TrainConfig(size="pinned", steps=3, lr=3e-3, batch_size=256,
                                        burn_in=0.0, val_every=3, augment="square", seed=0))


@pytest.fixture(scope="module")
def augmented_run(network_file, tmp_path_factory):
    return _augmented_run(network_file[0], tmp_path_factory.mktemp("net") / "run")


def _parameters(run):
    import jax
    from flax import nnx

    from scoremodels.rundir import load_run

    model, _ = load_run(run, use_ema=False)
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_square_augmentation_trains_bit_reproducibly(network_file, augmented_run, tmp_path):
    """`augment = "square"` through the (sharded) training step: two seeded runs end with
    identical parameters that differ from the linear-response start."""
    first = _parameters(augmented_run)
    second = _parameters(_augmented_run(network_file[0], tmp_path / "b"))
    assert all(np.array_equal(x, y) for x, y in zip(first, second))
    zero_heads = [x for x in first if x.ndim == 2 and x.shape[1] in (1, 2, 3)]
    assert any(np.abs(x).max() > 0 for x in zero_heads)  # the zero-initialised heads moved
