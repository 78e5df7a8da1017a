"""Figures of hard-disc runs: the coarse-grained Boltzmann entropy of a free expansion."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import numpy as np
import xarray as xr

from simcore.plotting._common import animation_frames, pyplot, scatter_2d, write_gif

if TYPE_CHECKING:
    from matplotlib.figure import Figure



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


def plot_harddisc(ent: xr.Dataset, title: str | None = None) -> "Figure":
    """Figure: ΔS_B/N against t and against τ = Δv t / L for each Δv, with the free-flight
    curve F(τ), ln k and the equilibrium references (S(kV) − S(V))/N drawn in.
    ``ent``: :func:`simcore.analysis.boltzmann.boltzmann_entropy` of a run."""
    fig, (ax_t, ax_tau) = pyplot().subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    _draw_entropy(ax_t, ax_tau, ent)
    ax_tau.set_ylabel("ΔS_B / N  (k_B)")
    ax_t.set_xlabel("t  (σ √(m/k_BT))")
    fig.suptitle(title or f"Boltzmann entropy, N = {ent.attrs.get('n')}, "
                 f"{ent.attrs.get('cells')} Δx = {ent.attrs.get('dx', 0):.4g} "
                 "(dotted: equilibrium references)", fontsize=10)
    return fig


def plot_free_expansion(entropies, title: str | None = None) -> "Figure":
    """Figure for several regimes (e.g. ``{"Knudsen": ent_k, "hydrodynamic": ent_h}``, each a
    :func:`simcore.analysis.boltzmann.boltzmann_entropy` Dataset): one row per regime,
    ΔS_B/N against t/L (left) and against τ = Δv t / L (right) for each Δv, with the
    free-flight curve F(τ), ln k and the equilibrium references (dotted) drawn in."""
    rows = len(entropies)
    fig, axes = pyplot().subplots(rows, 2, figsize=(11, 3.6 * rows), layout="constrained",
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


def figure(ds: xr.Dataset, progress: bool = False, **options) -> "Figure":
    """``simcore plot`` of a hard-disc run: :func:`plot_harddisc` of its Boltzmann entropy
    (``options`` go to :func:`~simcore.analysis.boltzmann.boltzmann_entropy`)."""
    from simcore.analysis.boltzmann import boltzmann_entropy

    return plot_harddisc(boltzmann_entropy(ds, progress=progress, **options))


def animate(ds: xr.Dataset, out: str | Path, fps: int = 15, progress: bool = True) -> Path:
    """GIF of the discs in their container [0, k·L] x [0, L_y], coloured by speed (at most
    150 frames, read one at a time)."""
    params = ds.simcore.params
    picks = animation_frames(ds.sizes["time"])
    box = (params.L_x, params.L_y)
    speed_max = 3.0 * np.sqrt(params.T)  # 3 thermal speeds: the Maxwellian tail saturates
    fig, ax = pyplot().subplots(figsize=(7, 7 * max(0.3, box[1] / box[0]) + 0.6),
                                layout="constrained")

    def draw(k):
        ax.cla()
        fr = ds.isel(time=int(picks[k]))
        pos = fr["coordinates"].values[:, :2].astype(float)
        speed = np.linalg.norm(fr["velocities"].values[:, :2].astype(float), axis=1)
        scatter_2d(ax, pos, speed, box, radius=params.sigma / 2, cmap="plasma", vmin=0.0,
                   vmax=speed_max)
        ax.axvline(params.L, color="0.6", lw=0.8, ls=":")  # where the partition stood
        ax.set_title(f"N = {params.n}, t = {float(fr.time):g}; colour = speed", fontsize=10)

    return write_gif(fig, draw, len(picks), out, fps=fps, progress=progress)
