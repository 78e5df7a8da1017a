"""Figures and animations of simcore files (freud-style: functions that take an ``ax`` or
return a Figure; matplotlib is imported only when something is drawn).

* :func:`plot_file` — ``simcore plot``: the figure (or GIF animation) that the file's
  engine record names, written atomically;
* :func:`plot_sweep`, :func:`plot_phase_diagram` — sweeps, from :func:`simcore.open_sweep`
  or ``simcore analyze SWEEP_DIR``;
* :func:`save_figure` — save a figure atomically and close it.

Per-engine figures live in :mod:`.couzin`, :mod:`.active`, :mod:`.harddisc` and
:mod:`.linear`.
"""

from __future__ import annotations

from pathlib import Path

from simcore._errors import UserInputError, bad_paths_are_user_errors
from simcore.plotting._common import save_figure
from simcore.plotting.sweep import plot_phase_diagram, plot_sweep

FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg")


@bad_paths_are_user_errors()
def plot_file(src: str | Path, out: str | Path, animate: bool = False, *,
              progress: bool = True, **options) -> Path:
    """Draw trajectory ``src`` into ``out``: the engine's figure (.png/.pdf/.svg/.jpg;
    ``options`` go to its analysis, e.g. ``convention`` for Couzin) or, with ``animate``,
    its GIF animation (a progress bar unless ``progress`` is False)."""
    from simcore.io.trajectory import open_trajectory
    from simcore.models import get_engine

    out = Path(out)
    if animate and out.suffix.lower() != ".gif":
        raise UserInputError(f"Animations are written as GIF; name the output *.gif (got {out}).")
    if not animate and out.suffix.lower() not in FIGURE_SUFFIXES:
        raise UserInputError(f"Cannot tell the figure format of {out}: use "
                             f"{', '.join(FIGURE_SUFFIXES)}.")
    with open_trajectory(src) as ds:
        engine = get_engine(ds.simcore.model)
        what = "animation" if animate else "figure"
        draw = engine.load(what)
        if draw is None:
            raise UserInputError(f"simcore plot has no {what} for '{engine.name}' files.")
        if animate:
            draw(ds, out, progress=progress)
        else:
            import inspect

            if "progress" in inspect.signature(draw).parameters:
                options = dict(options, progress=progress)
            save_figure(draw(ds, **options), out)
    return out


__all__ = ["plot_file", "plot_sweep", "plot_phase_diagram", "save_figure"]
