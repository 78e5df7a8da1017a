"""Free expansion of a hard-disc gas: the Boltzmann entropy ΔS_B/N(t) in two regimes.

Runs the event-driven hard-disc engine (``simcore run harddisc``) for the free expansion
V → 2V in the Knudsen regime (preset ``knudsen``, λ/L ≈ 0.5) and in the hydrodynamic
regime (preset ``hydro``, λ/L ≈ 0.015), computes the coarse-grained Boltzmann entropy
S_B(t) on x-strips of width L/8 for three velocity-cell sides Δv = 0.25, 0.5, 1
(``simcore.analysis.boltzmann.boltzmann_entropy``) and draws ΔS_B/N against t/L and
against τ = Δv t/L with the collisionless curve F(τ), ln 2 and the same-cell equilibrium
references.

Usage: ``python examples/free_expansion.py [--quick | --n N] [--out DIR] [--workers N]
[--overwrite]``.
Writes in DIR the trajectories ``knudsen.nc`` and ``hydro.nc``, their entropies
``knudsen_entropy.nc`` and ``hydro_entropy.nc`` (dims ``dv``, ``time``) and the figure
``free_expansion.png``. Full mode: the presets as they are (N = 4·10⁴ each, about
2·10⁵ and 10⁷ collisions; about 100 s on 2 shared cores); ``--n N``: N discs per regime with
the Knudsen preset's λ/L, the hydrodynamic preset's φ (so its λ/L ∝ 1/√N) and both
presets' t/L range and frame count — a larger N lowers the sparse-cell bias of S_B at
small Δv (the equilibrium reference approaches ln 2 as N/K grows); the time grows as
N^1.5 (N = 160000: 6 min on 2 cores, 440 MB of trajectories); ``--quick`` is ``--n 4000``
(well under a minute).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DV = (0.25, 0.5, 1.0)
REGIMES = {"knudsen": "Knudsen", "hydro": "hydrodynamic"}
QUICK_N = 4000
REPORT_T_OVER_L = (0.2, 0.5, 1.0, 2.0, 3.0)


def regime_params(preset: str, n: int | None) -> dict:
    """Parameter overrides of a regime: none for the presets as they are (``n`` None);
    else N = n with the preset's λ/L (Knudsen) or φ (hydro), and the preset's t_end/L and
    number of frames."""
    from simcore.models import harddisc as hd

    if n is None:
        return {}
    base = hd.Params(**hd.PRESETS[preset])
    frames = round(base.t_end / base.frame_dt)
    if preset == "knudsen":
        # λ/L = L / (√2 N σ g) = 0.5 with A = 2 L²  ->  L = N σ/√2, φ = π/(4 N) (σ = 1)
        update = {"n": n, "phi": math.pi / (4 * n)}
    else:
        update = {"n": n}
    small = base.model_copy(update=update)
    frame_dt = round(base.t_end / base.L * small.L / frames, 1)
    return dict(update, frame_dt=frame_dt, t_end=frame_dt * frames)


def run_regime(preset: str, folder: str, n: int | None, seed: int, verbose: bool) -> dict:
    """Run one regime, compute its entropy, write both; return a short summary."""
    import simcore
    from simcore.analysis.boltzmann import boltzmann_entropy
    from simcore.io.results import write_dataset
    from simcore.models import harddisc as hd

    folder = Path(folder)
    traj, ent_path = folder / f"{preset}.nc", folder / f"{preset}_entropy.nc"
    overrides = regime_params(preset, n)
    t0 = time.perf_counter()
    c0 = time.process_time()
    simcore.run("harddisc", preset=preset, overrides=overrides, seed=seed, out=traj,
                overwrite=True, quiet=not verbose)
    run_s, run_cpu = time.perf_counter() - t0, time.process_time() - c0
    with simcore.open_trajectory(traj) as ds:
        params = ds.simcore.params
        collisions = float(ds["collisions"].values[-1])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ent = boltzmann_entropy(ds, dv=list(DV))
    for w in caught:  # the sparse-cell warning (expected at small N): one line, no traceback
        print(f"  note ({preset}): {w.message}", flush=True)
    lam = hd.mean_free_path(params)
    ent.attrs.update(preset=preset, seed=seed, lambda_over_L=lam / params.L,
                     collisions=collisions, run_wall_s=run_s, run_cpu_s=run_cpu)
    if ent_path.exists():
        ent_path.unlink()
    write_dataset(ent, ent_path)
    return {"preset": preset, "n": params.n, "L": params.L, "lambda_over_L": lam / params.L,
            "collisions": collisions, "wall": run_s, "cpu": run_cpu, "entropy": str(ent_path)}


def main(argv=None) -> None:
    import numpy as np
    import xarray as xr

    from simcore.plotting import save_figure
    from simcore.plotting.harddisc import plot_free_expansion

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="free_expansion", help="output folder")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help=f"--n {QUICK_N} (< 1 min)")
    size.add_argument("--n", type=int, default=None,
                      help="discs per regime (default: the presets' 40000): the Knudsen "
                           "preset's λ/L, the hydro preset's φ, their t/L range; a larger N "
                           "lowers the sparse-cell bias of S_B (time ∝ N^1.5)")
    parser.add_argument("--workers", type=int, default=2,
                        help="run the two regimes in parallel processes (1: one after the other)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs if they exist")
    args = parser.parse_args(argv)
    n = QUICK_N if args.quick else args.n
    if n is not None and n < 100:
        parser.error(f"--n must be at least 100 (got {n})")
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "free_expansion.png"
    outputs = [png] + [folder / f"{p}{s}.nc" for p in REGIMES for s in ("", "_entropy")]
    for path in outputs:
        if path.exists() and not args.overwrite:
            raise SystemExit(f"{path} exists; pass --overwrite or choose another --out.")

    t0 = time.perf_counter()
    mode = "the presets' N" if n is None else f"N = {n}"
    print(f"Free expansion V -> 2V, {mode}: running {', '.join(REGIMES)} "
          f"({'in parallel' if args.workers > 1 else 'one after the other'}) ...", flush=True)
    jobs = [(p, str(folder), n, args.seed, args.workers == 1) for p in REGIMES]
    if args.workers > 1:
        with ProcessPoolExecutor(max_workers=min(args.workers, len(jobs))) as pool:
            futures = [pool.submit(run_regime, *job) for job in jobs]
            summaries = [f.result() for f in futures]
    else:
        summaries = [run_regime(*job) for job in jobs]
    for s in summaries:
        print(f"  {s['preset']:8s} N = {s['n']}, L = {s['L']:.0f}, "
              f"λ/L = {s['lambda_over_L']:.3g}, "
              f"{s['collisions']:.3g} collisions in {s['wall']:.0f} s "
              f"({s['collisions'] / max(s['cpu'], 1e-9):.3g} per CPU-s incl. writing)", flush=True)

    entropies = {}
    for preset, label in REGIMES.items():
        entropies[label] = xr.load_dataset(folder / f"{preset}_entropy.nc")
    save_figure(plot_free_expansion(entropies), png)

    print("\nΔS_B/N (Stirling) at t/L = " + ", ".join(f"{x:g}" for x in REPORT_T_OVER_L)
          + "; last column: equilibrium reference (S(2V) − S(V))/N; ln 2 = 0.693")
    for label, ent in entropies.items():
        tl = ent["time"].values / float(ent.attrs["L"])
        for k, dv in enumerate(ent["dv"].values):
            ds = ent["delta_s_stirling"].isel(dv=k).values
            vals = [ds[int(np.argmin(abs(tl - x)))] for x in REPORT_T_OVER_L]
            ref = float(ent["delta_s_eq_stirling"].isel(dv=k))
            lam = float(ent.attrs["lambda_over_L"])
            print(f"  {label:12s} λ/L = {lam:<6.2g} Δv = {dv:<5g} "
                  + " ".join(f"{v:6.3f}" for v in vals)
                  + f" | {ref:6.3f}")
    print(f"\nDone in {time.perf_counter() - t0:.0f} s.")
    print(f"  trajectories: {', '.join(str(folder / (p + '.nc')) for p in REGIMES)}")
    print(f"  entropies:    {', '.join(s['entropy'] for s in summaries)}")
    print(f"  figure:       {png}")


if __name__ == "__main__":
    main()
