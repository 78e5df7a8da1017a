"""MIPS phase diagram of active Brownian particles over (φ, Pe), with a snapshot inset.

A sweep (``simcore.sweep``, processes backend) of ABP with WCA repulsion over the packing
fraction φ and the self-propulsion speed v0 at fixed D_r = 0.48, D_t = D_r σ²/3 (the
``mips`` preset's units), i.e. over the Péclet number Pe = 3 v0 / (σ D_r). Each run is
analysed (``simcore.sweep.analyze_sweep``, as ``simcore analyze FOLDER`` does) and the
bimodality verdict of the per-particle local packing fraction (``mips`` = 1 when the
distribution splits into a dilute gas and a dense cluster) is drawn as the phase diagram,
with the largest-cluster fraction as a second panel and, as an inset, the last frame of
the densest high-Pe run coloured by local packing fraction.

Usage: ``python examples/mips_phase_diagram.py [--quick] [--out DIR] [--workers N]``.
Writes ``mips_sweep/`` (the runs and their manifest), ``mips_diagnostics.nc`` and
``mips_phase_diagram.png`` in DIR. Full mode: 16 runs of N = 1000 for t = 20 (about 3 min
on 2 quiet cores, 8 min on a loaded machine); ``--quick``: 4 tiny runs (well under a
minute).

At t = 20 with N = 1000 only the fastest-separating states (φ = 0.6, Pe >= 100) have
split into a dilute gas and a dense cluster; near the binodal (e.g. φ = 0.45, Pe = 150)
nucleation takes longer, and at φ = 0.75 the dense phase fills the box (the largest
cluster holds everyone, but there is no dilute phase to detect). ``--steps`` runs longer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

D_R = 0.48


def peclet(v0):
    """Pe = 3 v0 / (σ D_r) with σ = 1."""
    return 3.0 * np.asarray(v0, dtype=float) / D_R


def main(argv=None) -> None:
    import matplotlib.pyplot as plt
    from scipy.spatial import cKDTree

    import simcore
    from simcore.io.results import write_dataset
    from simcore.plotting import plot_phase_diagram, save_figure
    from simcore.sweep import analyze_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="mips_phase_diagram", help="output folder")
    parser.add_argument("--quick", action="store_true", help="a small version (< 1 min)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    parser.add_argument("--steps", type=int, default=200000,
                        help="steps per run in full mode (dt = 1e-4; default 200000, t = 20)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the diagnostics and the figure if they exist")
    args = parser.parse_args(argv)
    if args.quick:
        phis, v0s, n, steps, every, workers = [0.3, 0.6], [1.6, 24.0], 300, 20000, 1000, 1
    else:
        phis, v0s, n, steps, every, workers = ([0.3, 0.45, 0.6, 0.75], [1.6, 6.4, 16.0, 24.0],
                                               1000, args.steps, args.steps // 40, args.workers)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    png, diag_path = folder / "mips_phase_diagram.png", folder / "mips_diagnostics.nc"
    for path in (png, diag_path):
        if path.exists() and not args.overwrite:
            raise SystemExit(f"{path} exists; pass --overwrite or choose another --out.")
    t0 = time.perf_counter()
    spec = {
        "model": "abp", "preset": "mips", "seed": 2014, "steps": steps, "write_every": every,
        "out": str(folder / "mips_sweep"), "params": {"n": n, "D_r": D_R, "D_t": D_R / 3},
        "grid": {"phi": phis, "v0": v0s},
    }
    sweep = simcore.sweep(spec, backend="processes" if workers > 1 else "serial",
                          workers=workers, quiet=False)
    diag = analyze_sweep(sweep)
    diag = diag.assign_coords(Pe=("v0", peclet(diag["v0"].values)))
    if diag_path.exists():
        diag_path.unlink()
    write_dataset(diag, diag_path)

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    pe_labels = [f"{p:.0f}" for p in peclet(v0s)]
    ax = axes[0]
    verdict = diag["mips"].isel(replica=0)
    cluster = diag["largest_cluster_fraction"].mean("replica")
    for p in diag.phi.values:
        for v in diag.v0.values:
            mips = int(verdict.sel(phi=p, v0=v))
            ax.scatter([p], [peclet(v)], s=160, marker="s" if mips else "o",
                       c=[float(cluster.sel(phi=p, v0=v))], cmap="viridis", vmin=0, vmax=1,
                       edgecolors="k", linewidths=1.5 if mips else 0.8)
    ax.scatter([], [], marker="s", c="w", edgecolors="k", label="MIPS (bimodal local density)")
    ax.scatter([], [], marker="o", c="w", edgecolors="k", label="homogeneous")
    ax.set_yscale("log")
    ax.set_xlim(0.0, max(phis) + 0.08)
    ax.set_ylim(min(peclet(v0s)) / 1.6, max(peclet(v0s)) * 1.6)
    ax.set_xlabel("packing fraction φ")
    ax.set_ylabel("Péclet number Pe = 3 v0 / (σ D_r)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"ABP + WCA, N = {n}, t = {steps * 1e-4:g} (D_r = {D_R}); colour: largest "
                 "cluster / N", fontsize=9)
    plot_phase_diagram(diag["largest_cluster_fraction"], "phi", "v0", ax=axes[1], vmin=0,
                       vmax=1, colorbar_label="largest cluster / N",
                       xlabel="packing fraction φ", ylabel="Péclet number", yvalues=pe_labels)
    axes[1].set_title("fraction of particles in the largest contact cluster", fontsize=10)

    # inset: the last frame of the highest-φ·Pe phase-separated run (or the top corner)
    picks = [(float(p), float(v)) for p in diag.phi.values for v in diag.v0.values
             if int(verdict.sel(phi=p, v0=v))]
    phi_i, v0_i = max(picks, key=lambda pv: pv[0] * pv[1]) if picks else (phis[-1], v0s[-1])
    ds = simcore.open_sweep(sweep)
    last = ds.sel(phi=phi_i, v0=v0_i, replica=0).isel(time=-1)
    pos = last["coordinates"].values[:, :2].astype(float)
    L = float(last["cell_lengths"].values[0])
    a = 0.5
    local_r = a / np.sqrt(0.025)
    counts = cKDTree(pos % L, boxsize=L).query_ball_point(pos % L, local_r, return_length=True)
    inset = ax.inset_axes([0.015, 0.36, 0.33, 0.6])
    width_in = 0.33 * 0.75 * 6.0  # inset width in inches, roughly
    inset.scatter(pos[:, 0], pos[:, 1], c=counts * a * a / local_r ** 2,
                  s=max(0.3, (72 * 2 * a * width_in / L) ** 2), cmap="viridis", vmin=0,
                  vmax=0.9, linewidths=0)
    inset.set_xlim(0, L)
    inset.set_ylim(0, L)
    inset.set_aspect("equal")
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_xlabel(f"φ = {phi_i:g}, Pe = {peclet(v0_i):.0f}, t = {steps * 1e-4:g}",
                     fontsize=7, labelpad=2)
    ds.close()
    save_figure(fig, png)
    print(f"MIPS verdict (rows Pe {', '.join(pe_labels)}; columns φ {phis}):")
    print(diag["mips"].isel(replica=0).transpose("v0", "phi").values)
    print(f"Wrote {png}, {diag_path} and the runs in {sweep} "
          f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    from simcore import UserInputError

    try:
        main()
    except UserInputError as err:  # e.g. --out holds the data of another mode
        raise SystemExit(f"error: {err}") from None
