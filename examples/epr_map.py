"""Per-particle entropy production of a MIPS cluster: train at N = 4096, infer at N = 32768.

The pipeline of Boffi & Vanden-Eijnden (PNAS 2024) on CPU, with a reduced budget:

1. ``simcore run abp --preset boffi2023`` (AOUP soft discs, φ = 0.5, v0 = 0.025,
   γ = 1e-4, ε = D_t = 0: hypoelliptic) at N = 4096 from the preset's ``blob`` start
   (a dense Gaussian blob, s.d. L/4, that relaxes into a cluster with a gas around it);
2. the same at N = 32768 (same φ and parameters, a box √8 times wider);
3. ``scoremodels train`` on the N = 4096 frames: a small local transformer (1 block,
   2 heads, 32 wide, 8 neighbours within a smooth cutoff of 3 radii), denoising score
   matching at σ = 0.05, **propulsion sector only**: with ε = 0 the all-variables EPR is
   infinite and the finite one is Σ̇_g = γ⁻¹E|v_g|², v_g = −γ(g + s_g) (the anchor's
   MIPS quantity);
4. ``scoremodels epr`` on the N = 32768 file in a child process, particles in batches
   (``--batch-particles``) and frames under ``--memory-budget``; its wall time and peak
   resident memory are measured;
5. the figure: the last N = 32768 snapshot coloured by the local EPR γ|g_i + s_{g_i}|²
   (``epr_local``) and the mean over dense / interface / dilute particles (≥ 5, 3–4, ≤ 2
   neighbours within 1.2 diameters).

These are early frames (t ≤ a few hundred time units, τ_p = 10⁴): the cluster is the
relaxing blob, not the stationary MIPS state, and the exact score-free total
−μ⟨∇·F⟩ of ``simcore analyze`` (printed beside the learned one) assumes stationarity,
so the two are not expected to agree here. At this stage the learned production is
lowest in the dense blob and highest in the gas (at the network's noise level, ~10⁻⁵),
not concentrated at the interface as in the anchor's stationary MIPS state; the interacting validation against the exact
total is ``tests/test_scoremodels_slow.py``.

Usage: ``python examples/epr_map.py [--quick] [--out DIR] [--figure PNG] [--overwrite]
[--batch-particles N] [--memory-budget MiB]``. Writes in DIR ``train.nc``, ``infer.nc``,
``run/`` (the trained network), ``epr.nc`` (per-particle EPR of the inference file),
``summary.json`` and the figure (default ``DIR/epr_map.png``). Full mode: about 5
minutes on 2 cores (262 s loaded); ``--quick``: N = 256 → 1024 and a few hundred steps (< 1 minute).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

FULL = dict(n_train=4096, n_infer=32768, steps=2000, frames=20, train_steps=1500,
            batch_particles=4096, memory_budget=256.0)
QUICK = dict(n_train=256, n_infer=1024, steps=200, frames=10, train_steps=60,
             batch_particles=256, memory_budget=16.0)
NET = dict(size="tiny", depth=1, heads=2, width=32, neighbours=8, cutoff=3.0,
           sector="propulsion", objective="dsm", sigmas=[0.05], lr=3e-3, burn_in=0.5,
           batch_size=256, val_every=250, seed=0)


def simulate(n: int, steps: int, frames: int, out: Path, seed: int) -> float:
    import simcore

    t0 = time.perf_counter()
    simcore.run("abp", preset="boffi2023", steps=steps, write_every=max(1, steps // frames),
                seed=seed, overrides={"n": n}, out=out)
    return time.perf_counter() - t0


def infer(run_dir: Path, traj: Path, out: Path, batch_particles: int, budget: float) -> dict:
    """``scoremodels epr`` in a child process: wall time and its peak RSS (MiB)."""
    cmd = [sys.executable, "-m", "scoremodels", "epr", str(run_dir), str(traj), "-o", str(out),
           "--batch-particles", str(batch_particles), "--memory-budget", str(budget),
           "--burn-in", "0.5", "--overwrite", "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"scoremodels epr failed ({proc.returncode}):\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_s": wall, "peak_rss_mib": max(peak, before) / 1024.0}


def classes(pos, box, diameter):
    """0 dense (≥ 5 neighbours within 1.2 diameters), 2 dilute (≤ 2), 1 interface."""
    import numpy as np

    from scoremodels.data import neighbourhoods

    _, _, cnt = neighbourhoods(pos, box, 8, 1.2 * diameter)
    return np.where(cnt >= 5, 0, np.where(cnt <= 2, 2, 1))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny N and budget (< 1 minute)")
    ap.add_argument("--out", default="epr_map_out", help="output folder")
    ap.add_argument("--figure", help="figure path (default OUT/epr_map.png)")
    ap.add_argument("--batch-particles", type=int, help="particles evaluated at once")
    ap.add_argument("--memory-budget", type=float, metavar="MiB", help="frames read at once")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.batch_particles:
        cfg["batch_particles"] = args.batch_particles
    if args.memory_budget:
        cfg["memory_budget"] = args.memory_budget
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise SystemExit(f"{out} exists and is not empty; pass --overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = Path(args.figure) if args.figure else out / "epr_map.png"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import netCDF4
    import numpy as np

    from scoremodels.train import TrainConfig, train
    from simcore import plot

    summary = {"mode": "quick" if args.quick else "full", **cfg, "net": NET}
    t_all = time.perf_counter()
    summary["sim_train_s"] = simulate(cfg["n_train"], cfg["steps"], cfg["frames"],
                                      out / "train.nc", seed=1)
    print(f"simulated N = {cfg['n_train']}: {summary['sim_train_s']:.0f} s", flush=True)
    summary["sim_infer_s"] = simulate(cfg["n_infer"], cfg["steps"], 2, out / "infer.nc",
                                      seed=2)
    print(f"simulated N = {cfg['n_infer']}: {summary['sim_infer_s']:.0f} s", flush=True)
    t0 = time.perf_counter()
    train(out / "train.nc", out / "run", TrainConfig(steps=cfg["train_steps"], **NET))
    summary["train_s"] = time.perf_counter() - t0
    print(f"trained {cfg['train_steps']} steps: {summary['train_s']:.0f} s", flush=True)
    summary["inference"] = infer(out / "run", out / "infer.nc", out / "epr.nc",
                                 cfg["batch_particles"], cfg["memory_budget"])
    print(f"EPR inference at N = {cfg['n_infer']}: {summary['inference']['wall_s']:.0f} s, "
          f"peak RSS {summary['inference']['peak_rss_mib']:.0f} MiB", flush=True)

    with netCDF4.Dataset(out / "epr.nc") as e, netCDF4.Dataset(out / "infer.nc") as t:
        epr = np.asarray(e["epr_local"][-1], float)
        pos = np.asarray(t["coordinates"][-1, :, :2], float)
        time_last = float(t["time"][-1]) if "time" in t.variables else float("nan")
        rec = json.loads(t.getncattr("run_parameters"))
        summary["epr_total"] = float(e["epr_total"][...])
        summary["epr_total_div"] = float(e["epr_total_div"][...])
        if "epr_exact_total" in e.variables:
            summary["epr_exact_total"] = float(e["epr_exact_total"][...])
        summary["epr_class_mean_all_frames"] = e["epr_class_mean"][:].tolist()
    box = float(np.sqrt(rec["n"] * np.pi * rec["radius"] ** 2 / rec["phi"]))
    cls = classes(pos, box, 2 * rec["radius"])
    means = [float(epr[cls == c].mean()) if np.any(cls == c) else float("nan")
             for c in range(3)]
    summary["epr_class_mean_last_frame"] = dict(zip(("dense", "interface", "dilute"), means))
    summary["class_fraction_last_frame"] = [float(np.mean(cls == c)) for c in range(3)]
    fig = plot.plot_epr_map(
        pos, epr, box, cls=cls, radius=rec["radius"],
        label="local EPR γ|g + s_g|² (1/time)",
        title=(f"AOUP soft discs (boffi2023), N = {rec['n']}, φ = {rec['phi']}, "
               f"t = {time_last:g}; network trained at N = {cfg['n_train']}"))
    plot.save_figure(fig, figure)
    summary["figure"] = str(figure)
    summary["total_s"] = time.perf_counter() - t_all
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    m = summary["epr_class_mean_last_frame"]
    print(f"mean local EPR: dense {m['dense']:.3g}, interface {m['interface']:.3g}, "
          f"dilute {m['dilute']:.3g}; total {summary['epr_total']:.4g} "
          f"(exact score-free, stationary formula: {summary.get('epr_exact_total', float('nan')):.4g})")
    print(f"figure: {figure}; total {summary['total_s']:.0f} s")
    return summary


if __name__ == "__main__":
    main()
