"""Figures of linear-SDE runs: relaxation, covariance and EPR against the closed forms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import numpy as np
import xarray as xr

from simcore import exact
from simcore.plotting._common import animation_frames, pyplot, write_gif

#: copies drawn in an animation (a random subset of larger runs)
ANIMATION_COPIES = 2000

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def plot_linear(ds: xr.Dataset, diag: xr.Dataset) -> "Figure":
    """Figure: ⟨|x|²⟩ over time against tr C; the empirical covariance against the Lyapunov
    solution (entry by entry, ± one standard error); the score-free EPR against the closed
    form in the title. ``diag``: :func:`simcore.analysis.linear.linear_diagnostics`."""
    params = ds.simcore.params
    fig, (ax_t, ax_c) = pyplot().subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    ax_t.plot(diag["time"], diag["second_moment"], label="simulation, mean over copies")
    ax_t.axhline(float(diag["second_moment_exact"]), color="k", ls="--",
                 label="stationary tr C (closed form)")
    ax_t.set_xlabel("time (model units)")
    ax_t.set_ylabel("⟨|x|²⟩")
    ax_t.legend(fontsize=8)
    exact = diag["covariance_exact"].values.ravel()
    got = diag["covariance"].values.ravel()
    err = diag["covariance_err"].values.ravel()
    ax_c.errorbar(exact, got, yerr=err, fmt="o", ms=3, lw=0.8, label="entries C_ij")
    lim = [min(exact.min(), got.min()), max(exact.max(), got.max())]
    ax_c.plot(lim, lim, "k--", lw=0.8, label="empirical = exact")
    ax_c.set_xlabel("C_ij, Lyapunov solution")
    ax_c.set_ylabel("C_ij, empirical")
    ax_c.set_title(f"largest |deviation| / error: {float(diag['covariance_max_z']):.2f}",
                   fontsize=10)
    ax_c.legend(fontsize=8)
    fig.suptitle(f"{ds.simcore.preset or 'linear'}: {params.n} copies of a {params.d}-component "
                 f"OU process; EPR per copy {float(diag['epr']):.4g} ± "
                 f"{float(diag['epr_err']):.2g} (score-free), {float(diag['epr_exact']):.6g} "
                 "(closed form)", fontsize=10)
    return fig


def figure(ds: xr.Dataset, **options) -> "Figure":
    """``simcore plot`` of a linear run: :func:`plot_linear` of its diagnostics."""
    from simcore.analysis.linear import linear_diagnostics

    return plot_linear(ds, linear_diagnostics(ds, **options))


def animate(ds: xr.Dataset, out: str | Path, fps: int = 15, progress: bool = True) -> Path:
    """GIF of the copies in the (x_0, x_1) plane (at most 2000 copies and 150 frames) with
    the stationary 1σ and 2σ ellipses of the closed-form covariance."""
    params = ds.simcore.params
    picks = animation_frames(ds.sizes["time"])
    n = ds.sizes["atom"]
    copies = np.sort(np.random.default_rng(0).choice(n, min(n, ANIMATION_COPIES),
                                                     replace=False))
    S = exact.stationary_covariance(params.B_matrix, params.D_matrix)
    C = S[:2, :2] if params.d >= 2 else np.diag([S[0, 0], 0.0])
    w, v = np.linalg.eigh(C)
    phi = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(phi), np.sin(phi)])
    ellipse = v @ (np.sqrt(np.maximum(w, 0))[:, None] * circle)
    reach = 3.5 * np.sqrt(max(w.max(), 1e-300))
    fig, ax = pyplot().subplots(figsize=(6, 6), layout="constrained")

    def draw(k):
        ax.cla()
        fr = ds.isel(time=int(picks[k]), atom=copies)
        xy = fr["coordinates"].values[:, :2].astype(float)
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.5, linewidths=0)
        for scale in (1, 2):
            ax.plot(scale * ellipse[0], scale * ellipse[1], "k--", lw=0.8)
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        ax.set_aspect("equal")
        ax.set_xlabel("x_0")
        ax.set_ylabel("x_1")
        ax.set_title(f"t = {float(fr.time):g}; dashed: stationary 1σ, 2σ", fontsize=10)

    return write_gif(fig, draw, len(picks), out, fps=fps, progress=progress)
