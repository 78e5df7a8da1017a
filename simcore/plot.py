"""Figures and animations of simcore trajectories (PNG figures, GIF animations).

Matplotlib only (the Agg backend, no display needed); GIFs use Pillow, which
matplotlib already depends on, so no ffmpeg is required.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from simcore._errors import UserInputError  # noqa: E402

_ENTROPIES = ("cohesion_entropy", "polarization_entropy", "depth_entropy",
              "angular_momentum_entropy", "nearest_neighbor_entropy",
              "velocity_correlation_entropy", "shape_entropy")
_MAX_ANIMATION_FRAMES = 150


def plot_file(src: str | Path, out: str | Path, animate: bool = False) -> Path:
    """Draw the diagnostics of trajectory ``src`` into ``out`` (.png/.pdf/.svg, or .gif)."""
    from simcore.io.trajectory import open_trajectory

    out = Path(out)
    if animate and out.suffix.lower() != ".gif":
        raise UserInputError(f"Animations are written as GIF; name the output *.gif (got {out}).")
    if not animate and out.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg"):
        raise UserInputError(f"Cannot tell the figure format of {out}: use .png, .pdf or .svg.")
    with open_trajectory(src) as ds:
        model = ds.simcore.model
        if model == "abp":
            if animate:
                raise UserInputError("Animations are available for Couzin runs only so far.")
            from simcore.analysis.active import active_diagnostics

            _save(plot_active(ds, active_diagnostics(ds)), out)
            return out
        if model != "couzin":
            raise UserInputError(f"simcore plot has no figure for model {model!r} yet.")
        if animate:
            animate_school(ds, out)
        else:
            from simcore.analysis.schooling import schooling_indices_from_dataset

            fig = plot_school(ds, schooling_indices_from_dataset(ds))
            _save(fig, out)
    return out


def _save(fig, out: Path) -> None:
    tmp = out.with_name(out.stem + ".part" + out.suffix)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)


def _heading_colors(vel: np.ndarray) -> np.ndarray:
    """Colour by heading azimuth (twilight, cyclic)."""
    phi = np.arctan2(vel[:, 1], vel[:, 0])
    return plt.get_cmap("twilight")((phi + np.pi) / (2 * np.pi))


def _snapshot(ax, pos: np.ndarray, vel: np.ndarray, box: np.ndarray, title: str) -> None:
    """3D scatter with heading arrows; the view is fitted to the school."""
    speed = np.linalg.norm(vel, axis=1, keepdims=True)
    head = vel / np.where(speed > 0, speed, 1.0)
    colors = _heading_colors(vel)
    lo, hi = pos.min(0), pos.max(0)
    span = max(float((hi - lo).max()), 1e-9)
    ax.quiver(pos[:, 0], pos[:, 1], pos[:, 2], head[:, 0], head[:, 1], head[:, 2],
              length=0.06 * span, colors=colors, linewidth=0.8, arrow_length_ratio=0.4)
    ax.scatter(pos[:, 0], pos[:, 1], pos[:, 2], s=6, c=colors, depthshade=False)
    if np.all(box > 0):
        lo, hi = np.zeros(3), box
    else:
        mid = 0.5 * (lo + hi)
        lo, hi = mid - 0.55 * span, mid + 0.55 * span
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.set_title(title, fontsize=10)


def plot_school(ds: xr.Dataset, indices: xr.Dataset):
    """Figure: P, M and OSI over time; the seven entropies; a 3D snapshot of the last frame."""
    fig = plt.figure(figsize=(12, 6.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1.15, 1])
    ax_order = fig.add_subplot(grid[0, 0])
    ax_ent = fig.add_subplot(grid[1, 0], sharex=ax_order)
    ax3d = fig.add_subplot(grid[:, 1], projection="3d")
    t = indices["time"].values
    for name, label, color in (("polarization", "polarization P", "C0"),
                               ("milling", "milling M", "C3"), ("osi", "OSI", "k")):
        ax_order.plot(t, indices[name].values, label=label, color=color)
    ax_order.set_ylim(-0.02, 1.02)
    ax_order.set_ylabel("order / index")
    ax_order.legend(loc="best", fontsize=8)
    for name in _ENTROPIES:
        ax_ent.plot(t, indices[name].values, label=name.replace("_entropy", ""), lw=1)
    ax_ent.set_ylim(-0.02, 1.02)
    ax_ent.set_xlabel("time (model units)")
    ax_ent.set_ylabel("normalised entropy")
    ax_ent.legend(loc="best", fontsize=7, ncol=2)
    last = ds.isel(time=-1)
    params = ds.simcore.params
    title = (f"{ds.simcore.preset or params.rule}: N = {params.n}, t = {float(last.time):g}\n"
             f"P = {float(indices['polarization'][-1]):.2f}, "
             f"M = {float(indices['milling'][-1]):.2f} "
             f"({indices.attrs.get('convention', '')} entropies)")
    _snapshot(ax3d, last["coordinates"].values.astype(float),
              last["velocities"].values.astype(float), ds.simcore.box, title)
    return fig


def animate_school(ds: xr.Dataset, out: Path, fps: int = 15) -> Path:
    """GIF of the school (at most 150 frames, evenly subsampled), read frame by frame."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    n_frames = ds.sizes["time"]
    picks = np.unique(np.linspace(0, n_frames - 1, min(n_frames, _MAX_ANIMATION_FRAMES))
                      .round().astype(int))
    box = ds.simcore.box
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="3d")

    def draw(k):
        ax.cla()
        fr = ds.isel(time=int(picks[k]))
        _snapshot(ax, fr["coordinates"].values.astype(float), fr["velocities"].values.astype(float),
                  box, f"t = {float(fr.time):g}")

    anim = FuncAnimation(fig, draw, frames=len(picks))
    tmp = out.with_name(out.stem + ".part.gif")
    anim.save(tmp, writer=PillowWriter(fps=fps))
    plt.close(fig)
    tmp.replace(out)
    return out


def plot_active(ds: xr.Dataset, diag: xr.Dataset):
    """Figure: last snapshot coloured by orientation and by local density, the density
    histogram with the MIPS verdict, and the MSD with the free-particle formula."""
    from scipy.spatial import cKDTree

    params = ds.simcore.params
    last = ds.isel(time=-1)
    pos = last["coordinates"].values[:, :2].astype(float)
    L = params.box
    a = params.particle_radius
    if params.propulsion == "abp":
        angle = last["theta"].values.astype(float)
    else:
        g = last["propulsion"].values[:, :2].astype(float)
        angle = np.arctan2(g[:, 1], g[:, 0])
    radius = 4 * a
    counts = cKDTree(pos % L, boxsize=L).query_ball_point(pos % L, radius, return_length=True)
    local_phi = counts * a * a / radius ** 2
    fig, axes = plt.subplots(2, 2, figsize=(11, 10), layout="constrained")
    size = max(0.5, (72 * 2 * a * 4.2 / L) ** 2)  # marker about one diameter wide
    for ax, values, cmap, label in ((axes[0, 0], (angle + np.pi) / (2 * np.pi), "twilight",
                                     "orientation θ / 2π"),
                                    (axes[0, 1], local_phi, "viridis", "local packing fraction")):
        sc = ax.scatter(pos[:, 0], pos[:, 1], c=values, s=size, cmap=cmap, linewidths=0)
        ax.set_xlim(0, L)
        ax.set_ylim(0, L)
        ax.set_aspect("equal")
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
    ax.set_xlabel("lag time")
    ax.set_ylabel("MSD")
    ax.set_title(f"exact EPR per particle: {float(diag['epr_exact']):.4g} ± "
                 f"{float(diag['epr_exact_err']):.2g}", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"{ds.simcore.preset or params.propulsion}: N = {params.n}, φ = {params.phi}, "
                 f"Pe = {params.peclet:.3g}")
    return fig
