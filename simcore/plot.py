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
