"""Figures of Couzin schools: order parameters, the seven entropies and a 3D snapshot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import numpy as np
import xarray as xr

from simcore.plotting._common import animation_frames, pyplot, write_gif

ENTROPIES = ("cohesion_entropy", "polarization_entropy", "depth_entropy",
             "angular_momentum_entropy", "nearest_neighbor_entropy",
             "velocity_correlation_entropy", "shape_entropy")

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def _heading_colors(vel: np.ndarray) -> np.ndarray:
    """Colour by heading azimuth (twilight, cyclic)."""
    phi = np.arctan2(vel[:, 1], vel[:, 0])
    return pyplot().get_cmap("twilight")((phi + np.pi) / (2 * np.pi))


def snapshot(ax, pos: np.ndarray, vel: np.ndarray, box: np.ndarray, title: str) -> None:
    """3D scatter with heading arrows on the 3D axes ``ax``; the view is fitted to the
    school (or to the box when it is periodic). Lengths in model units."""
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


def plot_school(ds: xr.Dataset, indices: xr.Dataset) -> "Figure":
    """Figure: P, M and OSI over time; the seven entropies; a 3D snapshot of the last frame.
    ``indices``: :func:`simcore.analysis.schooling.schooling_indices_from_dataset` of ``ds``."""
    fig = pyplot().figure(figsize=(12, 6.5), layout="constrained")
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
    for name in ENTROPIES:
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
    snapshot(ax3d, last["coordinates"].values.astype(float),
             last["velocities"].values.astype(float), ds.simcore.box, title)
    return fig


def figure(ds: xr.Dataset, progress: bool = False, **options) -> "Figure":
    """``simcore plot`` of a Couzin run: :func:`plot_school` of its schooling indices
    (``options``, e.g. ``convention``, go to the analysis)."""
    from simcore.analysis.schooling import schooling_indices_from_dataset

    return plot_school(ds, schooling_indices_from_dataset(ds, progress=progress, **options))


def animate(ds: xr.Dataset, out: str | Path, fps: int = 15, progress: bool = True) -> Path:
    """GIF of the school (at most 150 frames, evenly subsampled), read frame by frame."""
    picks = animation_frames(ds.sizes["time"])
    box = ds.simcore.box
    fig = pyplot().figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="3d")

    def draw(k):
        ax.cla()
        fr = ds.isel(time=int(picks[k]))
        snapshot(ax, fr["coordinates"].values.astype(float),
                 fr["velocities"].values.astype(float), box, f"t = {float(fr.time):g}")

    return write_gif(fig, draw, len(picks), out, fps=fps, progress=progress)
