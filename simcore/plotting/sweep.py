"""Figures of sweeps: lines against one sweep dimension, phase diagrams over two.

Both take a DataArray of :func:`simcore.open_sweep` or ``simcore analyze SWEEP_DIR`` (the
sweep parameters as dimensions, optionally ``replica``) and draw into ``ax`` (default: a
new figure), returning the axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from simcore.plotting._common import axes_or_new

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure



def _mean_and_spread(da: xr.DataArray, over: str | None):
    """Mean and standard deviation over ``over`` (e.g. ``replica``) if that dimension exists."""
    if over and over in da.dims:
        spread = da.std(over) if da.sizes[over] > 1 else None
        return da.mean(over), spread
    return da, None


def plot_sweep(da: xr.DataArray, x: str, *, hue: str | None = None, ax=None, over: str = "replica",
               label: str | None = None, **line_kw) -> "Axes":
    """Lines of ``da`` against sweep dimension ``x``, one per value of ``hue``.

    ``da`` has dimensions ``x`` (and optionally ``hue`` and ``over``); the mean over
    ``over`` (the replicas) is drawn with a band of ± one standard deviation when there is
    more than one replica. Returns the axes.
    """
    ax = axes_or_new(ax, (5, 3.5))
    extra = set(da.dims) - {x, hue, over}
    if extra:
        raise ValueError(f"plot_sweep: reduce the dimensions {sorted(extra)} first")
    mean, spread = _mean_and_spread(da, over)
    groups = [(None, mean, spread)] if hue is None else [
        (v, mean.sel({hue: v}), None if spread is None else spread.sel({hue: v}))
        for v in mean[hue].values]
    for value, m, s in groups:
        xs = m[x].values
        text = label if value is None else f"{hue} = {value}"
        (line,) = ax.plot(xs, m.transpose(x).values, marker="o", ms=3, label=text, **line_kw)
        if s is not None:
            lo = (m - s).transpose(x).values
            hi = (m + s).transpose(x).values
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(x)
    ax.set_ylabel(da.attrs.get("long_name", da.name or ""))
    if hue is not None or label is not None:
        ax.legend(fontsize=8)
    return ax


def plot_phase_diagram(da: xr.DataArray, x: str, y: str, *, ax=None, over: str = "replica",
                       cmap: str = "viridis", vmin=None, vmax=None, annotate: bool = True,
                       colorbar_label: str | None = None, xlabel: str | None = None,
                       ylabel: str | None = None, xvalues=None, yvalues=None) -> "Axes":
    """A phase diagram: ``da`` (mean over ``over``) as coloured cells over sweep dims ``x``, ``y``.

    Cells are placed by index (the sweep values need not be evenly spaced) and labelled
    with the values of ``x``/``y`` (or ``xvalues``/``yvalues``, e.g. a derived Péclet
    number); ``annotate`` writes each cell's value. Returns the axes.
    """
    ax = axes_or_new(ax, (5, 4))
    mean, _ = _mean_and_spread(da, over)
    extra = set(mean.dims) - {x, y}
    if extra:
        raise ValueError(f"plot_phase_diagram: reduce the dimensions {sorted(extra)} first")
    grid = mean.transpose(y, x).values.astype(float)
    im = ax.imshow(grid, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                   interpolation="nearest")
    xs = mean[x].values if xvalues is None else np.asarray(xvalues)
    ys = mean[y].values if yvalues is None else np.asarray(yvalues)
    ax.set_xticks(range(len(xs)), [f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)
                                   for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)
                                   for v in ys])
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if annotate:
        lo = np.nanmin(grid) if vmin is None else vmin
        hi = np.nanmax(grid) if vmax is None else vmax
        for (j, i), value in np.ndenumerate(grid):
            if np.isfinite(value):
                dark = (value - lo) / (hi - lo) < 0.5 if hi > lo else True
                ax.text(i, j, f"{value:.2g}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    ax.figure.colorbar(im, ax=ax, label=colorbar_label or da.attrs.get("long_name", da.name or ""))
    return ax


def sweep_summary(diagnostics: xr.Dataset, max_panels: int = 6) -> xr.Dataset:
    """One number per run for each diagnostic of :func:`simcore.sweep.analyze_sweep`: time
    series become their mean over the last third of the frames (a series along one more
    dimension, e.g. the hard discs' Δv, is taken at its first value, named in the label);
    per-run scalars are kept; other diagnostics (histograms, lags) are left out. At most
    ``max_panels`` variables."""
    dims = diagnostics.attrs.get("simcore_sweep_dims", "").split()
    out = {}
    for name, var in diagnostics.data_vars.items():
        extra = [d for d in var.dims if d not in dims]
        if "time" in extra and len(extra) <= 2:
            t = var.sizes["time"]
            var = var.isel(time=slice(t - max(1, t // 3), t)).mean("time")
            for other in set(extra) - {"time"}:
                value = var[other].values[0] if other in var.coords else 0
                var = var.isel({other: 0}, drop=True)
                name = f"{name} ({other} = {value})"
        elif extra:
            continue
        if var.dtype.kind in "fiub":
            out[name] = var.astype(float)
        if len(out) == max_panels:
            break
    return xr.Dataset(out, attrs=diagnostics.attrs)


def plot_sweep_folder(diagnostics: xr.Dataset) -> "Figure":
    """Figure of a sweep (``simcore plot SWEEP_DIR``): one panel per diagnostic of
    :func:`sweep_summary`, against the first sweep dimension, one line per value of the
    second (further dimensions averaged), mean ± s.d. over replicas."""
    import matplotlib.pyplot as plt

    summary = sweep_summary(diagnostics)
    dims = [d for d in diagnostics.attrs.get("simcore_sweep_dims", "").split() if d != "replica"]
    if not summary.data_vars or not dims:
        from simcore._errors import UserInputError

        raise UserInputError("This sweep has no per-run diagnostics or no varied parameter "
                             "to draw; use simcore.open_sweep for a custom figure.")
    x, hue = dims[0], (dims[1] if len(dims) > 1 else None)
    averaged = dims[2:]
    n = len(summary.data_vars)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), layout="constrained",
                             squeeze=False)
    for ax, (name, var) in zip(axes.ravel(), summary.data_vars.items()):
        if averaged:
            var = var.mean(averaged)
        plot_sweep(var.rename(name), x, hue=hue, ax=ax)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    note = f"; averaged over {', '.join(averaged)}" if averaged else ""
    fig.suptitle(f"sweep of {diagnostics.attrs.get('simcore_model', '?')}: last-third means "
                 f"(mean ± s.d. over replicas){note}", fontsize=10)
    return fig
