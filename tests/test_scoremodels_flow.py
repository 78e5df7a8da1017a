"""The model-free ``flow`` objective (scoremodels.flow): score targets from frame
differences of a trapped hypoelliptic AOUP, where the exact g-score is the linear response
s* = −(κ + γ) b_x / (γ v0) (μ = 1).

Checks that can fail: the targets regress on s* with slope 1 (a sign or factor error in
either scheme gives −1, 0 or 2), their noise has the variance 1/(γh) (central) and
1/(2γh) (backward) the module documents, and the pinned network trained by the flow
objective keeps the certificate of the exact score."""

from __future__ import annotations

import numpy as np
import pytest

import simcore
from scoremodels import data as sdata
from scoremodels.epr import estimate
from scoremodels.flow import flow_targets, usable_frames
from scoremodels.train import TrainConfig, train

V0, GAMMA, KAPPA, DT = 0.025, 1e-4, 1.0, 0.01
EVERY = 2                      # h = 0.02 between frames; κh = 0.02


@pytest.fixture(scope="module")
def dense_trap(tmp_path_factory):
    """1000 trapped hypoelliptic AOUPs (the MIPS ratios; non-interacting, so φ = 0.5 only
    sets a box of side 79), 3000 steps written every 2; the positions relax from the
    uniform start (|x| ≤ 56) in 1/κ, so after t = 18 (60 %) the transient is below 10⁻⁶,
    against b_x ~ γv0√(κ/γ)/κ = 2.5·10⁻⁴."""
    out = tmp_path_factory.mktemp("flow") / "trap.nc"
    simcore.run("abp", seed=5, steps=3000, write_every=EVERY, out=out,
                overrides={"n": 1000, "phi": 0.5, "potential": "none", "propulsion": "aoup",
                           "v0": V0, "gamma": GAMMA, "D_t": 0.0, "kappa": KAPPA, "dt": DT,
                           "init": "uniform", "precision": "float64"})
    return out


@pytest.mark.parametrize("scheme,factor", [("central", 1.0), ("backward", 0.5)])
def test_flow_targets_regress_on_the_exact_score(dense_trap, scheme, factor):
    h = EVERY * DT
    with sdata.TrajectorySet([dense_trap]) as ts:
        frames = usable_frames(ts, np.arange(900, len(ts)), 1, scheme)
        assert frames[-1] == (len(ts) - 2 if scheme == "central" else len(ts) - 1)
        s_hat = flow_targets(ts, frames, 1, scheme).astype(float)
        bx = ts.read(frames)["drift"][..., :2].reshape(-1, 2).astype(float)
    s_star = -(KAPPA + GAMMA) * bx / (GAMMA * V0)
    slope = float((s_hat * s_star).sum() / (s_star ** 2).sum())
    # standard error of the slope sqrt(var noise / Σ s*²) ≈ 0.008; O(κh) bias ~1 %
    assert slope == pytest.approx(1.0, abs=0.04), slope
    noise = s_hat - slope * s_star
    var = float(noise.var())
    assert var == pytest.approx(factor / (GAMMA * h), rel=0.1), (var, factor / (GAMMA * h))


def test_flow_objective_keeps_the_exact_score(dense_trap, tmp_path):
    """The pinned network starts at the exact score; 300 steps of the flow objective (lr
    10⁻³, h = 0.02) keep both forms within 3 % of 2κ and ε_v < 0.03 on the stationary
    frames (a target of the wrong sign or scale pulls the corrections away from it)."""
    run = train(dense_trap, tmp_path / "run",
                TrainConfig(size="pinned", sector="propulsion", objective="flow",
                            flow_step=1, steps=300, lr=1e-3, batch_size=256, burn_in=0.6,
                            neighbours=4, width=32, val_every=100, seed=0))
    import csv

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 3 and all(np.isfinite(float(r["val_loss_ema"])) for r in rows)
    r = estimate(run, [dense_trap], tmp_path / "epr.nc", burn_in=0.6, stride=4)
    assert r["epr_total"] == pytest.approx(2 * KAPPA, rel=0.03), r
    assert r["epr_total_div"] == pytest.approx(2 * KAPPA, rel=0.03), r
    assert r["epr_certificate"] < 0.03, r
