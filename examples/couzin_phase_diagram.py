"""Couzin 2002 phase diagram: hysteresis of P and M in Δr_o, and the OSI of the four regimes.

Part 1 reproduces the hysteresis of Couzin et al. (J. Theor. Biol. 218:1, 2002, Fig. 3):
N = 100 fish with Δr_a = r_a - r_o = 14 (r_r = 1) start as a swarm at Δr_o = 0; Δr_o
(the width of the zone of orientation, r_o - r_r) is raised step by step to its maximum
and then lowered back, each value starting from the school left by the previous one
(the model's ``init_state`` / ``advance`` are used directly, so the state carries over).
P (polarisation) and M (milling) are averaged over the end of each stay. Coming from a
swarm the school passes through a torus (high M) before aligning; coming back from a
parallel group it stays parallel (low M) down to small Δr_o: the group's history matters.

Part 2 runs the four regime presets (swarm, torus, dynamic and highly parallel) as a sweep
(``simcore.sweep`` with ``preset`` as a dimension, several seeds each), analyses it with
``simcore.sweep.analyze_sweep`` and shows P, M and the OSI of each regime.

Usage: ``python examples/couzin_phase_diagram.py [--quick] [--out DIR] [--workers N]``.
Writes ``hysteresis.nc``, ``regimes/`` (the sweep), ``regimes_indices.nc`` and
``couzin_phase_diagram.png`` in DIR. Full mode takes a few minutes on 2 cores, ``--quick``
well under one.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import time
from pathlib import Path

import numpy as np
import xarray as xr

REGIMES = ["swarm", "torus", "dynamic_parallel", "highly_parallel"]
DELTA_RA = 14.0


def order_parameters(pos: np.ndarray, head: np.ndarray) -> tuple[float, float]:
    """P = |<u_i>| and M = |<r̂_ic × u_i>| (r_ic from the school's centroid), open space."""
    p = float(np.linalg.norm(head.mean(axis=0)))
    r = pos - pos.mean(axis=0)
    norm = np.linalg.norm(r, axis=1, keepdims=True)
    r_hat = np.divide(r, norm, out=np.zeros_like(r), where=norm > 0)
    m = float(np.linalg.norm(np.cross(r_hat, head).mean(axis=0)))
    return p, m


def hysteresis_loop(seed: int, deltas: list[float], equilibrate: int, measure: int,
                    every: int, n: int) -> np.ndarray:
    """P and M at each Δr_o going up then down, carrying the school across values.

    Returns an array (2 directions, len(deltas), 2 quantities). ``equilibrate`` and
    ``measure`` are steps per value; P and M are sampled every ``every`` steps while
    measuring.
    """
    from simcore.models import couzin
    from simcore.rng import kernel_key

    base = dict(couzin.PRESETS["swarm"], n=n)
    base = {k: v for k, v in base.items() if k in couzin.Params.model_fields}

    def params(delta):
        return couzin.Params(**dict(base, r_o=1.0 + delta, r_a=1.0 + delta + DELTA_RA))

    state = couzin.init_state(params(deltas[0]), seed)
    key = kernel_key(seed)
    step = 0
    out = np.empty((2, len(deltas), 2))
    for direction, order in enumerate((range(len(deltas)), reversed(range(len(deltas))))):
        for k in order:
            p = params(deltas[k])
            couzin.advance(state, p, key, step, equilibrate)
            step += equilibrate
            samples = []
            for _ in range(max(1, measure // every)):
                couzin.advance(state, p, key, step, every)
                step += every
                samples.append(order_parameters(state["positions"], state["headings"]))
            out[direction, k] = np.mean(samples, axis=0)
    return out


def run_hysteresis(args, deltas, folder: Path) -> xr.Dataset:
    seeds = [1000 + r for r in range(args.replicas)]
    job = dict(deltas=deltas, equilibrate=args.equilibrate, measure=args.measure, every=10,
               n=args.n)
    if args.workers > 1 and len(seeds) > 1:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            loops = list(pool.map(_loop, [(s, job) for s in seeds]))
    else:
        loops = [_loop((s, job)) for s in seeds]
    data = np.stack(loops)  # replica, direction, delta, quantity
    ds = xr.Dataset(
        {"polarization": (("replica", "direction", "delta_r_o"), data[..., 0],
                          {"long_name": "polarization P"}),
         "milling": (("replica", "direction", "delta_r_o"), data[..., 1],
                     {"long_name": "milling M"})},
        coords={"replica": np.arange(len(seeds)), "direction": ["increasing", "decreasing"],
                "delta_r_o": ("delta_r_o", np.asarray(deltas, dtype=float),
                              {"long_name": "orientation-zone width Δr_o = r_o - r_r"}),
                "seed": ("replica", seeds)},
        attrs={"n": args.n, "delta_r_a": DELTA_RA, "steps_equilibrate": args.equilibrate,
               "steps_measure": args.measure, "reference": "Couzin et al. 2002, Fig. 3"},
    )
    from simcore.io.results import write_dataset

    write_dataset(ds, folder / "hysteresis.nc")
    return ds


def _loop(item):
    seed, job = item
    return hysteresis_loop(seed, **job)


def run_regimes(args, folder: Path) -> xr.Dataset:
    """The four regime presets as a sweep; returns the last-half means of P, M and OSI."""
    import simcore
    from simcore.io.results import write_dataset
    from simcore.sweep import analyze_sweep

    spec = {
        "model": "couzin", "seed": 2002, "seeds_per_point": args.replicas,
        "steps": args.regime_steps, "write_every": 20, "out": str(folder / "regimes"),
        "params": {"n": args.n}, "grid": {"preset": REGIMES},
    }
    backend = "processes" if args.workers > 1 else "serial"
    simcore.sweep(spec, backend=backend, workers=args.workers, quiet=False)
    indices = analyze_sweep(folder / "regimes")
    half = indices.sizes["time"] // 2
    summary = indices[["polarization", "milling", "osi"]].isel(time=slice(half, None)) \
        .mean("time")
    write_dataset(indices, folder / "regimes_indices.nc")
    return summary


def figure(hyst: xr.Dataset, regimes: xr.Dataset, out: Path) -> None:
    import matplotlib.pyplot as plt

    from simcore.plotting import plot_sweep, save_figure

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    for ax, name, label in ((axes[0], "polarization", "polarization P"),
                            (axes[1], "milling", "milling M")):
        for direction, style in (("increasing", "-"), ("decreasing", "--")):
            plot_sweep(hyst[name].sel(direction=direction), "delta_r_o", ax=ax, ls=style,
                       label=f"Δr_o {direction}")
        ax.set_xlabel("Δr_o (orientation-zone width, r_r = 1)")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    axes[0].set_title(f"Couzin 2002 hysteresis, N = {hyst.attrs['n']}, Δr_a = {DELTA_RA:g}",
                      fontsize=10)
    ax = axes[2]
    x = np.arange(len(REGIMES))
    for k, (name, color) in enumerate((("polarization", "C0"), ("milling", "C3"),
                                       ("osi", "k"))):
        m = regimes[name].mean("replica").values
        s = regimes[name].std("replica").values if regimes.sizes["replica"] > 1 else None
        ax.bar(x + (k - 1) * 0.27, m, 0.27, yerr=s, color=color, alpha=0.8,
               label={"osi": "OSI"}.get(name, name))
    ax.set_xticks(x, [r.replace("_", "\n") for r in REGIMES])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("time average (second half)")
    ax.set_title(f"regimes: {regimes.sizes['replica']} seed(s) each", fontsize=10)
    ax.legend(fontsize=8)
    save_figure(fig, out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="couzin_phase_diagram", help="output folder")
    parser.add_argument("--quick", action="store_true", help="a small version (< 1 min)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace hysteresis.nc and the figure if they exist")
    args = parser.parse_args(argv)
    if args.quick:
        deltas = [0.0, 1.0, 2.0, 4.0, 8.0, 12.0]
        args.n, args.replicas, args.equilibrate, args.measure, args.regime_steps = \
            50, 1, 300, 100, 400
        args.workers = 1  # starting worker processes would cost more than these tiny runs
    else:
        deltas = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0]
        args.n, args.replicas, args.equilibrate, args.measure, args.regime_steps = \
            100, 4, 1500, 500, 3000
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "couzin_phase_diagram.png"
    for path in (folder / "hysteresis.nc", folder / "regimes_indices.nc", png):
        if path.exists() and not args.overwrite:
            raise SystemExit(f"{path} exists; pass --overwrite or choose another --out.")
    t0 = time.perf_counter()
    print(f"Hysteresis loop: {len(deltas)} values of Δr_o up and down, {args.replicas} "
          f"replica(s), N = {args.n} ...", flush=True)
    hyst = run_hysteresis(args, deltas, folder)
    print("Regimes sweep ...", flush=True)
    regimes = run_regimes(args, folder)
    figure(hyst, regimes, png)
    m = hyst["milling"].mean("replica")
    print(f"max M increasing {float(m.sel(direction='increasing').max()):.2f}, "
          f"decreasing {float(m.sel(direction='decreasing').max()):.2f}")
    for r in REGIMES:
        row = regimes.sel(preset=r).mean("replica")
        print(f"  {r:18s} P = {float(row.polarization):.2f}  M = {float(row.milling):.2f}  "
              f"OSI = {float(row.osi):.2f}")
    print(f"Wrote {png} and its data in {folder} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    from simcore import UserInputError

    try:
        main()
    except UserInputError as err:  # e.g. --out holds the data of another mode
        raise SystemExit(f"error: {err}") from None
