"""Diagnostics of linear-SDE runs (``simcore run linear``): stationary covariance and EPR.

For dx = −Bx dt + √(2D) dW the stationary density is N(0, C) with BC + CBᵀ = 2D, and the
entropy production rate per copy (k_B = 1, all coordinates even, model time units) is
Σ̇ = tr(Bᵀ D⁻¹ B C) − tr B. This module compares a trajectory with both:

* ``covariance`` (component, component_2): the empirical second moment ⟨x xᵀ⟩ over copies
  and frames after the burn-in (the mean is zero by symmetry), with block-average errors
  ``covariance_err`` and the exact ``covariance_exact``; ``covariance_max_z`` is the
  largest |empirical − exact| / error over the entries;
* ``epr``: the score-free estimate ⟨bᵀ D⁻¹ b⟩ − tr B from the stored drift b = −Bx
  (= ⟨vᵀD⁻¹v⟩ because ⟨bᵀ∇log ρ⟩ = −⟨∇·b⟩ = tr B), with its block error ``epr_err``,
  next to the closed form ``epr_exact`` (:func:`simcore.exact.ou_epr`; ∞ when D is
  singular and the flow leaves its range, NaN when the covariance itself is singular);
* ``second_moment`` (time): the per-frame mean of |x|², to watch the relaxation from
  ``init = "zero"``, and ``second_moment_exact`` = tr C.

Error bars: the copies are independent, so with ≥ 20 copies the standard error is the
spread of the per-copy time averages over √n (exact whatever the time correlations);
with fewer copies, block averages over frames, never below σ·√(τ/N) from the integrated
autocorrelation time τ (:func:`simcore.analysis._frames.block_mean`, which warns when
the frames hold fewer than 10 independent samples).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from simcore.analysis import require_model
from simcore.analysis._frames import block_mean, first_after_burn_in, frame_dim
from simcore import exact


_MIN_COPIES = 20  # from this many copies on, errors come from the spread between copies


def linear_diagnostics(ds: xr.Dataset, burn_in: float | None = None,
                       n_blocks: int = 10) -> xr.Dataset:
    """Empirical covariance and EPR of a linear-SDE trajectory against the closed forms.

    ``burn_in``: fraction of the frames dropped before averaging; default 0 for
    ``init = "stationary"`` runs and 0.2 for ``init = "zero"``.
    """
    require_model(ds, "linear", "linear_diagnostics")
    p = ds.simcore.params
    B, D, d = p.B_matrix, p.D_matrix, p.d
    if burn_in is None:
        burn_in = 0.0 if p.init == "stationary" else 0.2
    dim = frame_dim(ds, "x")
    n_frames = ds.sizes[dim]
    k0 = first_after_burn_in(n_frames, burn_in)
    x = ds["x"].isel({dim: slice(k0, None)}).values.astype(np.float64)  # (T, n, d)
    drift = ds["drift"].isel({dim: slice(k0, None)}).values.astype(np.float64)

    C_exact = exact.stationary_covariance(B, D)
    n_copies = x.shape[1]
    by_copies = n_copies >= _MIN_COPIES

    def mean_err(samples):
        """samples (T, n): mean, and its error over independent copies or frame blocks."""
        if by_copies:
            per_copy = samples.mean(0)
            return float(per_copy.mean()), float(per_copy.std(ddof=1) / math.sqrt(n_copies))
        return block_mean(samples.mean(1), n_blocks)

    cov = np.empty((d, d))
    cov_err = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            cov[i, j], cov_err[i, j] = mean_err(x[:, :, i] * x[:, :, j])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(cov - C_exact) / cov_err
    max_z = float(np.nanmax(z)) if np.isfinite(z).any() else math.nan

    try:
        epr_exact = exact.ou_epr(B, D)
    except ValueError:  # the noise does not reach every coordinate: no stationary density
        epr_exact = math.nan
    if np.linalg.eigvalsh(D).min() > 1e-12 * np.abs(D).max():
        Dinv = np.linalg.inv(D)
        epr, epr_err = mean_err(np.einsum("tai,ij,taj->ta", drift, Dinv, drift) - np.trace(B))
    else:
        epr, epr_err = math.nan, math.nan

    sm = (np.asarray(ds["x"].values, dtype=np.float64) ** 2).sum(-1).mean(-1)
    time = ds[dim].values if dim == "time" else np.arange(n_frames)
    comp = np.arange(d)
    return xr.Dataset(
        {
            "covariance": (("component", "component_2"), cov,
                           {"long_name": "empirical stationary second moment <x x^T>"}),
            "covariance_err": (("component", "component_2"), cov_err,
                               {"long_name": "standard error of covariance"}),
            "covariance_exact": (("component", "component_2"), C_exact,
                                 {"long_name": "Lyapunov solution of B C + C B^T = 2 D"}),
            "covariance_max_z": ((), max_z, {"long_name":
                                 "max |covariance - exact| / covariance_err over entries"}),
            "epr": ((), epr, {"long_name": "score-free EPR per copy <b^T D^-1 b> - tr B",
                              "units": "1/model time"}),
            "epr_err": ((), epr_err, {"long_name": "standard error of epr"}),
            "epr_exact": ((), epr_exact, {"long_name": "tr(B^T D^-1 B C) - tr B per copy",
                                          "units": "1/model time", "method": "closed form"}),
            "second_moment": (("time",), sm, {"long_name": "per-frame mean of |x|^2"}),
            "second_moment_exact": ((), float(np.trace(C_exact)),
                                    {"long_name": "tr C"}),
        },
        coords={"time": time, "component": comp, "component_2": comp},
        attrs={"burn_in_fraction": float(burn_in), "n_blocks": int(n_blocks),
               "convention": "k_B = 1, all coordinates even under time reversal"},
    )
