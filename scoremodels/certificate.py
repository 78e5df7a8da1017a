"""What a learned EPR is checked against: the exact references and the score-free certificate.

* :func:`closed_form_epr`: the closed form of the file's system where one exists
  (:mod:`simcore.exact`);
* :func:`exact_reference`: the exact score-free EPR per particle of the frames used
  (per-frame series from simcore's analysis, or a closed form);
* :func:`certificate` / :func:`write_certificate`: ε_v = (Σ̇_sq − 2Σ̇_div + Σ̇*)/Σ̇* and the
  lower bounds on Σ̇*, with block-bootstrap errors (:func:`block_bootstrap`).

Units: EPR per particle per model time unit (k_B = 1); ε_v is dimensionless.
"""

from __future__ import annotations

import math

import numpy as np

from scoremodels import network
from scoremodels.adapters import STATE_VECTORS, Adapter

CERTIFICATE_THRESHOLD = 0.2  # ε_v above this: the learned local EPR is not a measurement




def certificate(epr_sq: float, epr_div: float, epr_exact: float) -> dict:
    """Score-free error certificate of a learned probability-flow velocity.

    ``epr_sq`` = ⟨vᵀD⁻¹v⟩ and ``epr_div`` = ⟨∇·v + vᵀD⁻¹b⟩ (the two learned totals) and
    ``epr_exact`` = Σ̇* (score-free), all in 1/time on the same frames. Returns
    ``eps_v`` = (Σ̇_sq − 2Σ̇_div + Σ̇*)/Σ̇* (dimensionless; the mean-square error of v
    relative to Σ̇*, ≥ 0 up to sampling error; 0 for the exact score),
    ``lower_bound`` = 2Σ̇_div − Σ̇_sq (1/time; ≤ Σ̇* for any v), ``lower_bound_cs`` =
    Σ̇_div²/Σ̇_sq when Σ̇_div > 0 (else 0; also ≤ Σ̇*, and ≥ ``lower_bound``) and
    ``passed`` (ε_v ≤ :data:`CERTIFICATE_THRESHOLD`).
    """
    sq, dv, ex = float(epr_sq), float(epr_div), float(epr_exact)
    if not (math.isfinite(ex) and ex > 0):
        eps = math.nan
    else:
        eps = (sq - 2.0 * dv + ex) / ex
    cs = dv * dv / sq if dv > 0 and sq > 0 else 0.0
    return {"eps_v": eps, "lower_bound": 2.0 * dv - sq, "lower_bound_cs": cs,
            "passed": bool(math.isfinite(eps) and eps <= CERTIFICATE_THRESHOLD)}


def block_bootstrap(series, n_blocks: int = 10, n_boot: int = 2000, seed: int = 0):
    """Mean of a correlated series and its standard error from a moving-free block
    bootstrap (contiguous blocks of equal length resampled with replacement)."""
    x = np.asarray(series, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) < 2:
        return float(x.mean()), math.nan
    nb = max(2, min(n_blocks, len(x)))
    ell = len(x) // nb
    blocks = x[: nb * ell].reshape(nb, ell).mean(1)
    g = np.random.default_rng(seed)
    boot = blocks[g.integers(0, nb, (n_boot, nb))].mean(1)
    return float(x.mean()), float(boot.std(ddof=1))


def write_certificate(nc, series, series_div, series_ex, exact_total, n_blocks) -> dict:
    """The certificate of :func:`certificate` on the frames used, with block-bootstrap
    errors of its per-frame numerator; written as variables ``epr_certificate``
    (dimensionless), ``epr_lower_bound`` and ``epr_lower_bound_cs`` (1/time) and the
    file attributes ``certificate_threshold`` / ``certificate_passed``."""
    sq, dv = np.asarray(series, float), np.asarray(series_div, float)
    ex = np.broadcast_to(np.asarray(series_ex, float), sq.shape)
    c = certificate(sq.mean(), dv.mean(), exact_total)
    _, num_err = block_bootstrap(sq - 2 * dv + ex, n_blocks)
    _, lb_err = block_bootstrap(2 * dv - sq, n_blocks)
    eps_err = num_err / exact_total if exact_total > 0 else math.nan

    def var(name, value, units, long_name):
        v = nc.createVariable(name, "f8", ())
        v[...] = value
        v.units = units
        v.long_name = long_name

    var("epr_certificate", c["eps_v"], "1",
        "score-free certificate eps_v = (epr_total - 2 epr_total_div + epr_exact_total) / "
        "epr_exact_total = <(v - v*)^T D^-1 (v - v*)> / exact EPR (0 for the exact score)")
    var("epr_certificate_err", eps_err, "1", "block-bootstrap standard error of eps_v")
    var("epr_lower_bound", c["lower_bound"], "1/time",
        "score-free lower bound 2 epr_total_div - epr_total on the exact EPR per particle")
    var("epr_lower_bound_err", lb_err, "1/time", "block-bootstrap standard error")
    var("epr_lower_bound_cs", c["lower_bound_cs"], "1/time",
        "Cauchy-Schwarz lower bound epr_total_div^2 / epr_total on the exact EPR")
    nc.certificate_threshold = CERTIFICATE_THRESHOLD
    nc.certificate_passed = "yes" if c["passed"] else "no"
    if not c["passed"]:
        nc.warning = (f"the learned velocity fails the score-free certificate (eps_v = "
                      f"{c['eps_v']:.4g} > {CERTIFICATE_THRESHOLD}): epr_local, epr_map and "
                      "epr_class_mean are not measurements of the local entropy production")
    return {"epr_certificate": c["eps_v"], "epr_certificate_err": eps_err,
            "epr_lower_bound": c["lower_bound"], "epr_lower_bound_err": lb_err,
            "epr_lower_bound_cs": c["lower_bound_cs"], "certificate_passed": c["passed"]}


def closed_form_epr(a: Adapter, sector: str) -> tuple[float, str] | None:
    """The closed-form EPR per particle (1/time) of the system of adapter ``a`` in
    ``sector``, with the formula's name, where one exists: the linear model
    (:func:`simcore.exact.ou_epr`, full sector) and non-interacting ABP/AOUP particles
    in a harmonic trap (``potential = "none"``, κ > 0; the trap in unbounded space, the
    drift v0 p − μκx): :func:`~simcore.exact.trapped_abp_epr` (full sector, D_t > 0),
    :func:`~simcore.exact.trapped_aoup_epr` (full sector with D_t > 0, or the
    propulsion sector). Else None."""
    from simcore import exact as ex

    p = a.params
    if a.layout == STATE_VECTORS:
        return ((float(ex.ou_epr(np.asarray(p["B"], float), a.diffusion)), "ou_epr")
                if sector == "full" else None)
    if p.get("potential") != "none" or not p.get("kappa", 0.0) > 0:
        return None
    kappa = float(p["kappa"]) * float(p.get("mu", 1.0))
    v0, D_t = float(p["v0"]), float(p["D_t"])
    if sector == "full" and D_t > 0:
        if a.prop_kind == "angle":
            return ex.trapped_abp_epr(v0, D_t, float(p["D_r"]), kappa), "trapped_abp_epr"
        return (ex.trapped_aoup_epr(v0, D_t, float(p["gamma"]), kappa, d=2),
                "trapped_aoup_epr")
    if sector == "propulsion" and a.prop_kind == "vector":
        return (ex.trapped_aoup_epr(v0, D_t, float(p["gamma"]), kappa, d=2, sector="g"),
                "trapped_aoup_epr, propulsion sector")
    return None


def exact_reference(tset, a, frames, sector):
    """Exact score-free EPR per particle: per-frame series from simcore's analysis
    (active particles), or the closed form ``simcore.exact.ou_epr`` (linear)."""
    if a.layout == network.LAYOUT:
        per = network.exact_epr_per_particle(a.params)
        return float(per.mean()), "closed form tr A / N (harmonic AOUP network)"
    if a.layout == STATE_VECTORS:
        if sector != "full":
            return None
        from simcore.exact import ou_epr

        return float(ou_epr(np.asarray(a.params["B"], float), a.diffusion)), "closed form ou_epr"
    hypo = np.all(np.diag(a.diffusion)[list(a.x_dims)] == 0)
    if (sector == "full") == bool(hypo):
        return None
    from simcore.analysis.active import exact_epr_per_frame
    from simcore.io.trajectory import open_trajectory

    out = []
    for fi, path in enumerate(tset.paths):
        local = [k for g, (fj, k) in ((g, tset.frames[g]) for g in frames) if fj == fi]
        if local:
            with open_trajectory(path) as ds:
                out.append(exact_epr_per_frame(ds, local))
    return np.concatenate(out), "simcore.analysis.active.exact_epr_per_frame"
