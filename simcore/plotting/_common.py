"""Helpers every figure shares: lazy pyplot, atomic saving, GIF writing, frame picks.

matplotlib is imported only when a figure is drawn, and its backend is never set here:
``simcore plot`` selects Agg itself, so importing simcore in a notebook leaves the
notebook's backend alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

#: at most this many frames go into an animation (evenly subsampled)
MAX_ANIMATION_FRAMES = 150


def pyplot():
    """``matplotlib.pyplot``, imported on first use."""
    import matplotlib.pyplot as plt

    return plt


def axes_or_new(ax, figsize=(5.0, 3.5)):
    """``ax``, or the axes of a new constrained-layout figure of ``figsize`` (inches)."""
    if ax is not None:
        return ax
    return pyplot().figure(figsize=figsize, layout="constrained").add_subplot()


def save_figure(fig, out: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` atomically (temporary name, then rename) and close it. A failed write
    is a :class:`simcore.UserInputError` that says why (full disk, permissions ...)."""
    from simcore.io.results import save_figure as write

    out = Path(out)
    try:
        write(fig, out, dpi=dpi)
    finally:
        pyplot().close(fig)
    return out


def animation_frames(n_frames: int, limit: int = MAX_ANIMATION_FRAMES) -> np.ndarray:
    """Indices of at most ``limit`` frames, evenly spread over ``n_frames`` (first and last
    included)."""
    return np.unique(np.linspace(0, n_frames - 1, min(n_frames, limit)).round().astype(int))


def write_gif(fig, draw: Callable[[int], None], n_frames: int, out: str | Path, *,
              fps: int = 15, progress: bool = True, desc: str = "animate") -> Path:
    """Write the animation ``draw(k)``, k = 0 .. n_frames - 1, of ``fig`` as a GIF (Pillow,
    no ffmpeg needed) to ``out`` atomically, with a progress bar unless ``progress`` is
    False; the figure is closed afterwards."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    from simcore._progress import progress as progress_bar
    from simcore.io.atomic import atomic_output

    out = Path(out)
    bar = progress_bar(n_frames, desc=desc, unit="frames", quiet=not progress)
    try:
        anim = FuncAnimation(fig, draw, frames=n_frames)
        with atomic_output(out) as tmp:
            anim.save(tmp, writer=PillowWriter(fps=fps),
                      progress_callback=lambda i, n: bar.update(1))
    finally:
        bar.close()
        pyplot().close(fig)
    return out


def scatter_2d(ax, pos: np.ndarray, values: np.ndarray, box: tuple[float, float], *,
               radius: float, cmap: str = "viridis", vmin=None, vmax=None):
    """Particles at ``pos`` (N, 2) as discs about ``radius`` wide (model length units)
    coloured by ``values``, in the box [0, box[0]] x [0, box[1]]; returns the artist."""
    width_points = ax.get_position().width * ax.figure.get_figwidth() * 72  # before layout
    size = max(0.3, (width_points * 2 * radius / max(box)) ** 2)
    sc = ax.scatter(pos[:, 0], pos[:, 1], c=values, s=size, cmap=cmap, vmin=vmin, vmax=vmax,
                    linewidths=0)
    ax.set_xlim(0, box[0])
    ax.set_ylim(0, box[1])
    ax.set_aspect("equal")
    return sc
