"""Figures of active particles (ABP/AOUP): snapshots, density histogram, MSD, EPR maps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import numpy as np
import xarray as xr

from simcore.plotting._common import animation_frames, pyplot, scatter_2d, write_gif

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def _angles(frame: xr.Dataset, params) -> np.ndarray:
    """Orientation angle of every particle in one frame (radians, −π .. π)."""
    if params.propulsion == "abp":
        return np.angle(np.exp(1j * frame["theta"].values.astype(float)))
    g = frame["propulsion"].values[:, :2].astype(float)
    return np.arctan2(g[:, 1], g[:, 0])


def local_packing_fraction(pos: np.ndarray, box: float, radius: float, a: float) -> np.ndarray:
    """Packing fraction around each particle: discs of radius ``a`` whose centres lie
    within ``radius`` (model length units), times their area, over the circle's area."""
    from scipy.spatial import cKDTree

    counts = cKDTree(pos % box, boxsize=box).query_ball_point(pos % box, radius,
                                                              return_length=True)
    return counts * a * a / radius ** 2


def plot_active(ds: xr.Dataset, diag: xr.Dataset) -> "Figure":
    """Figure: last snapshot coloured by orientation and by local density, the density
    histogram with the MIPS verdict, and the MSD with the free-particle formula; the exact
    EPR per particle (with its error) in the figure's title.
    ``diag``: :func:`simcore.analysis.active.active_diagnostics` of ``ds``."""
    from matplotlib.ticker import LogLocator

    params = ds.simcore.params
    last = ds.isel(time=-1)
    pos = last["coordinates"].values[:, :2].astype(float)
    L, a = params.box, params.particle_radius
    angle = _angles(last, params)
    local_phi = local_packing_fraction(pos, L, 4 * a, a)
    fig, axes = pyplot().subplots(2, 2, figsize=(11, 10), layout="constrained")
    for ax, values, cmap, label, hi in (
            (axes[0, 0], (angle + np.pi) / (2 * np.pi), "twilight", "orientation θ / 2π", 1.0),
            (axes[0, 1], np.minimum(local_phi, 1.0), "viridis",
             "local packing fraction (4a circles)", 1.0)):
        sc = scatter_2d(ax, pos, values, (L, L), radius=a, cmap=cmap, vmin=0.0, vmax=hi)
        ax.set_title(f"{label}, t = {float(last.time):g}", fontsize=10)
        fig.colorbar(sc, ax=ax, shrink=0.8)
    ax = axes[1, 0]
    ax.plot(diag["density"], diag["density_hist"], label="grid cells")
    ax.plot(diag["density"], diag["particle_density_hist"], label="per particle", ls="--")
    verdict = "MIPS" if int(diag["mips"]) else "homogeneous"
    if int(diag["mips"]):
        for name in ("dilute_density", "dense_density"):
            ax.axvline(float(diag[name]), color="k", lw=0.8, ls=":")
    ax.set_xlabel("local packing fraction")
    ax.set_ylabel("probability density")
    ax.set_title(f"verdict: {verdict}; largest cluster "
                 f"{float(diag['largest_cluster_fraction']):.2f} of N", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.loglog(diag["lag"], diag["msd"], "o", ms=3, label="simulation")
    ax.loglog(diag["lag"], diag["msd_free"], "-", label="free particle, closed form")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(numticks=6))
    ax.set_xlabel("lag time")
    ax.set_ylabel("MSD")
    ax.set_title("mean squared displacement", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"{ds.simcore.preset or params.propulsion}: N = {params.n}, φ = {params.phi}, "
                 f"Pe = {params.peclet:.3g}; exact EPR per particle "
                 f"{float(diag['epr_exact']):.4g} ± {float(diag['epr_exact_err']):.2g}")
    return fig


def figure(ds: xr.Dataset, progress: bool = False, **options) -> "Figure":
    """``simcore plot`` of an active-particle run: :func:`plot_active` of its diagnostics."""
    from simcore.analysis.active import active_diagnostics

    return plot_active(ds, active_diagnostics(ds, progress=progress, **options))


def animate(ds: xr.Dataset, out: str | Path, fps: int = 15, progress: bool = True) -> Path:
    """GIF of the particles coloured by orientation (at most 150 frames, read one at a
    time)."""
    params = ds.simcore.params
    picks = animation_frames(ds.sizes["time"])
    L, a = params.box, params.particle_radius
    fig, ax = pyplot().subplots(figsize=(6, 6), layout="constrained")

    def draw(k):
        ax.cla()
        fr = ds.isel(time=int(picks[k]))
        pos = fr["coordinates"].values[:, :2].astype(float) % L
        scatter_2d(ax, pos, (_angles(fr, params) + np.pi) / (2 * np.pi), (L, L), radius=a,
                   cmap="twilight", vmin=0.0, vmax=1.0)
        ax.set_title(f"{ds.simcore.preset or params.propulsion}: t = {float(fr.time):g}, "
                     "colour = orientation", fontsize=10)

    return write_gif(fig, draw, len(picks), out, fps=fps, progress=progress)

