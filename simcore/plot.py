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
        if model == "harddisc":
            if animate:
                raise UserInputError("Animations are available for Couzin runs only so far.")
            from simcore.analysis.boltzmann import boltzmann_entropy

            _save(plot_harddisc(boltzmann_entropy(ds)), out)
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
    from simcore.io.results import save_figure

    try:
        save_figure(fig, out, dpi=120)
    finally:
        plt.close(fig)


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
    try:
        anim.save(tmp, writer=PillowWriter(fps=fps))
        tmp.replace(out)
    except OSError as exc:
        from simcore.io.results import output_error

        tmp.unlink(missing_ok=True)
        raise output_error(out, exc) from None
    finally:
        plt.close(fig)
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


def _draw_entropy(ax_t, ax_tau, ent: xr.Dataset, time_scale: float = 1.0) -> None:
    """ΔS_B/N of one Boltzmann-entropy Dataset against t / ``time_scale`` (ax_t) and against
    τ = Δv t / L (ax_tau), one colour per Δv, with the equilibrium references (dotted),
    the free-flight curve F(τ) and ln k."""
    from simcore.analysis.boltzmann import free_flight_entropy

    t = ent["time"].values / time_scale
    ln_k = float(ent.attrs.get("ln_expansion", np.log(2.0)))
    tau_max = 0.0
    for k, dv in enumerate(ent["dv"].values):
        color = f"C{k}"
        ds_st = ent["delta_s_stirling"].isel(dv=k).values
        tau = ent["tau"].isel(dv=k).values
        tau_max = max(tau_max, float(tau.max()))
        ax_t.plot(t, ds_st, color=color, label=f"Δv = {dv:g}")
        ax_tau.plot(tau, ds_st, color=color, label=f"Δv = {dv:g}")
        ref = float(ent["delta_s_eq_stirling"].isel(dv=k))
        for ax in (ax_t, ax_tau):
            ax.axhline(ref, color=color, ls=":", lw=1)
    grid = np.linspace(0.0, max(tau_max, 1e-9), 400)
    ax_tau.plot(grid, free_flight_entropy(grid, ent.attrs.get("geometry", "walls")), "k--",
                lw=1.2, label="F(τ), free flight")
    for ax in (ax_t, ax_tau):
        ax.axhline(ln_k, color="0.4", lw=1, label=f"ln {ent.attrs.get('expansion', 2):g}")
    ax_t.set_ylabel("ΔS_B / N  (k_B)")
    ax_tau.set_xlabel("τ = Δv t / L")
    ax_tau.legend(loc="lower right", fontsize=8)


def plot_harddisc(ent: xr.Dataset, title: str | None = None):
    """Figure: ΔS_B/N against t and against τ = Δv t / L for each Δv, with the free-flight
    curve F(τ), ln k and the equilibrium references (S(kV) − S(V))/N drawn in."""
    fig, (ax_t, ax_tau) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    _draw_entropy(ax_t, ax_tau, ent)
    ax_tau.set_ylabel("ΔS_B / N  (k_B)")
    ax_t.set_xlabel("t  (σ √(m/k_BT))")
    fig.suptitle(title or f"Boltzmann entropy, N = {ent.attrs.get('n')}, "
                 f"{ent.attrs.get('cells')} Δx = {ent.attrs.get('dx', 0):.4g} "
                 "(dotted: equilibrium references)", fontsize=10)
    return fig


def plot_free_expansion(entropies, title: str | None = None):
    """Figure for several regimes (e.g. ``{"Knudsen": ent_k, "hydrodynamic": ent_h}``, each a
    :func:`simcore.analysis.boltzmann.boltzmann_entropy` Dataset): one row per regime,
    ΔS_B/N against t/L (left) and against τ = Δv t / L (right) for each Δv, with the
    free-flight curve F(τ), ln k and the equilibrium references (dotted) drawn in."""
    rows = len(entropies)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 3.6 * rows), layout="constrained",
                             squeeze=False, sharey=True)
    for r, (name, ent) in enumerate(entropies.items()):
        ax_t, ax_tau = axes[r]
        _draw_entropy(ax_t, ax_tau, ent, time_scale=float(ent.attrs["L"]))
        label = f"{name}: N = {ent.attrs.get('n')}"
        if "lambda_over_L" in ent.attrs:
            label += f", λ/L = {float(ent.attrs['lambda_over_L']):.2g}"
        ax_t.set_title(label, fontsize=10, loc="left")
        ax_t.set_xlabel("t / L  (L = initial width; ⟨|v|⟩ = 1.25)")
    fig.suptitle(title or "Free expansion V → 2V: coarse-grained Boltzmann entropy "
                 "(x-strips; dotted: equilibrium references)", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- sweeps


def _mean_and_spread(da: xr.DataArray, over: str | None):
    """Mean and standard deviation over ``over`` (e.g. ``replica``) if that dimension exists."""
    if over and over in da.dims:
        spread = da.std(over) if da.sizes[over] > 1 else None
        return da.mean(over), spread
    return da, None


def plot_sweep(da: xr.DataArray, x: str, *, hue: str | None = None, ax=None, over: str = "replica",
               label: str | None = None, **line_kw):
    """Lines of ``da`` against sweep dimension ``x``, one per value of ``hue``.

    ``da`` has dimensions ``x`` (and optionally ``hue`` and ``over``); the mean over
    ``over`` (the replicas) is drawn with a band of ± one standard deviation when there is
    more than one replica. Returns the axes.
    """
    if ax is None:
        ax = plt.figure(figsize=(5, 3.5), layout="constrained").add_subplot()
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
                       ylabel: str | None = None, xvalues=None, yvalues=None):
    """A phase diagram: ``da`` (mean over ``over``) as coloured cells over sweep dims ``x``, ``y``.

    Cells are placed by index (the sweep values need not be evenly spaced) and labelled
    with the values of ``x``/``y`` (or ``xvalues``/``yvalues``, e.g. a derived Péclet
    number); ``annotate`` writes each cell's value. Returns the axes.
    """
    if ax is None:
        ax = plt.figure(figsize=(5, 4), layout="constrained").add_subplot()
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
    plt.colorbar(im, ax=ax, label=colorbar_label or da.attrs.get("long_name", da.name or ""))
    return ax


def save_figure(fig, out: str | Path) -> Path:
    """Save ``fig`` atomically (temporary name, then rename) and close it."""
    out = Path(out)
    _save(fig, out)
    return out


def plot_epr_map(pos: np.ndarray, epr: np.ndarray, box: float, *, cls: np.ndarray | None = None,
                 class_names=("dense", "interface", "dilute"), title: str = "",
                 label: str = "local EPR per particle", radius: float = 1.0,
                 reference: np.ndarray | None = None, reference_label: str = "reference"):
    """Figure: particles of one snapshot coloured by their local entropy production
    (log colour scale, clipped to the 1st–99.5th percentiles of the positive values) and,
    when ``cls`` (0 dense, 1 interface, 2 dilute per particle) is given, the mean local
    EPR of each class with its particle fraction. With ``reference`` (another per-particle
    quantity of the same frame, e.g. an exact local decomposition of the same total), the
    class panel compares the two profiles, each as class mean / mean over all particles.
    ``pos`` (N, 2) in [0, box)."""
    from matplotlib.colors import LogNorm

    pos = np.asarray(pos, float)
    epr = np.asarray(epr, float)
    ncols = 2 if cls is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.4 * ncols if ncols == 1 else 11.5, 5.4),
                             layout="constrained",
                             gridspec_kw={"width_ratios": [2.1, 1]} if ncols == 2 else None)
    axes = np.atleast_1d(axes)
    ax = axes[0]
    pvals = epr[epr > 0]
    lo, hi = (np.percentile(pvals, [1, 99.5]) if len(pvals) else (1e-3, 1.0))
    lo = max(lo, hi * 1e-4)
    order = np.argsort(epr)  # the largest on top
    size = max(0.05, (72 * 2 * radius * 5.0 / box) ** 2)
    sc = ax.scatter(pos[order, 0], pos[order, 1], c=np.clip(epr[order], lo, hi), s=size,
                    cmap="inferno", norm=LogNorm(lo, hi), linewidths=0)
    ax.set_facecolor("0.85")
    ax.set_xlim(0, box)
    ax.set_ylim(0, box)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    fig.colorbar(sc, ax=ax, shrink=0.85, label=label)
    if cls is not None:
        ax = axes[1]
        cls = np.asarray(cls)
        frac = [np.mean(cls == c) for c in range(3)]

        def class_means(v):
            return np.array([v[cls == c].mean() if np.any(cls == c) else np.nan
                             for c in range(3)])

        means = class_means(epr)
        if reference is None:
            bars = ax.bar(class_names, means, color=["0.3", "tab:orange", "0.7"])
            ax.set_ylabel(f"mean {label}")
        else:
            reference = np.asarray(reference, float)
            x = np.arange(3)
            ax.bar(x - 0.2, means / epr.mean(), 0.4, color="tab:orange", label="learned")
            bars = ax.bar(x + 0.2, class_means(reference) / reference.mean(), 0.4,
                          color="0.45", label=reference_label)
            ax.set_xticks(x, class_names)
            ax.set_ylabel("class mean / mean over all particles")
            ax.legend(fontsize=8, loc="upper right")
        for b, f in zip(bars, frac):
            ax.annotate(f"{100 * f:.0f} % of N", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_title("by local environment", fontsize=10)
    return fig
