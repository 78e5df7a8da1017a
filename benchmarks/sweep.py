"""Wall time of a 16-run sweep on the serial, processes and dask backends, and the overhead per run.

What is measured:

A. **Speed-up.** The same 16-run Couzin sweep (a 4 x 4 grid over r_o and noise, N = 100
   fish, ``--steps`` steps each, about 1.5 s of work per run on one core) is run in
   a fresh folder with ``simcore.sweep`` on each backend: ``serial`` (one process, the
   runs one after another), ``processes`` (a forkserver pool of ``--workers`` processes)
   and ``dask`` (a LocalCluster of ``--workers`` single-threaded worker processes). Wall
   times include starting the pool or the cluster. The ratio serial / parallel should
   approach the number of cores (2 on the reference machine) when the runs dominate.
B. **Overhead per run.** (i) The 16 runs are also timed as a plain loop of
   ``simcore.run`` calls in this process (the work itself): (serial sweep - loop) / 16 is
   what the sweep machinery (planning, manifest, checks) adds per run. (ii) A 16-run sweep
   of ``steps = 0`` runs (one frame written each) measures the fixed cost per run of each
   backend, worker start-up included: its wall time / 16.

Numba kernels are compiled (cached) once before any timing. The machine may be shared:
the cores used by other processes during each timing are reported ("others"); rows
measured with others >= 0.25 cores are marked * and are unreliable.

Run ``python benchmarks/sweep.py`` (about 2 minutes on 2 quiet cores) or ``--quick`` (smoke
test).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ForeignLoad, machine_header, table, wait_quiet  # noqa: E402


def spec(steps: int, folder: Path) -> dict:
    """The benchmark sweep: 4 x 4 grid, one seed per point, N = 100 Couzin fish."""
    return {"model": "couzin", "preset": "dynamic_parallel", "seed": 1, "steps": steps,
            "write_every": max(1, steps // 20) if steps else 10, "out": str(folder),
            "params": {"n": 100},
            "grid": {"r_o": [2.0, 4.0, 6.0, 8.0], "noise": [0.02, 0.05, 0.1, 0.2]}}


def timed_sweep(backend: str, steps: int, root: Path, workers: int) -> tuple[float, float]:
    """Wall seconds of one sweep in a fresh folder, and the other processes' load."""
    import simcore

    folder = root / f"{backend}-{steps}"
    shutil.rmtree(folder, ignore_errors=True)
    probe = ForeignLoad()
    t0 = time.perf_counter()
    simcore.sweep(spec(steps, folder), backend=backend, workers=workers, quiet=True)
    wall = time.perf_counter() - t0
    return wall, probe.cores()


def timed_loop(steps: int, root: Path) -> tuple[float, float]:
    """Wall seconds of the same 16 runs as plain ``simcore.run`` calls in this process."""
    from simcore.sweep import plan_sweep
    from simcore.config import split_run_parameters
    from simcore.driver import run_model

    folder = root / f"loop-{steps}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    plan = plan_sweep(spec(steps, folder))
    probe = ForeignLoad()
    t0 = time.perf_counter()
    for run in plan.runs:
        model, params, settings, preset = split_run_parameters(run.run_parameters)
        run_model(model, params, settings, folder / run.file, preset=preset, quiet=True,
                  threads=1)
    return time.perf_counter() - t0, probe.cores()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15000,
                        help="steps per run (default 15000: about 1.5 s per run)")
    parser.add_argument("--max-wait", type=float, default=20.0,
                        help="seconds to wait for a quiet machine before each timing")
    parser.add_argument("--workers", type=int, default=2, help="parallel workers (default 2)")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--no-dask", action="store_true", help="skip the dask backend")
    args = parser.parse_args(argv)
    steps = 300 if args.quick else args.steps
    print(machine_header("benchmarks/sweep.py: 16-run sweep, serial vs processes vs dask"))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    backends = ["serial", "processes"] + ([] if args.no_dask else ["dask"])
    if "dask" in backends:
        try:
            import distributed  # noqa: F401
        except ImportError:
            print("dask.distributed is not installed (pip install 'simcore[cluster]'): "
                  "skipping the dask backend")
            backends.remove("dask")
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # serial runs use one core, as workers do
    root = Path(tempfile.mkdtemp(prefix="simcore-bench-sweep-"))
    try:
        import simcore

        warm = root / "warm.nc"  # compile / load the kernels before timing
        simcore.run("couzin", preset="dynamic_parallel", steps=20, overrides={"n": 100},
                    out=warm)
        wait_quiet(args.max_wait)
        loop_wall, loop_load = timed_loop(steps, root)
        rows, walls, loads, zero = [], {}, {}, {}
        for backend in backends:
            wait_quiet(args.max_wait)
            walls[backend], loads[backend] = timed_sweep(backend, steps, root, args.workers)
        for backend in backends:
            wait_quiet(args.max_wait)
            zero[backend] = timed_sweep(backend, 0, root, args.workers)

        def mark(load):
            return f"{load:.2f}" + (" *" if load >= 0.25 else "")

        rows.append(["plain loop of simcore.run (this process)", 1, f"{loop_wall:.2f}", "", "",
                     f"{loop_wall / 16:.3f}", mark(loop_load)])
        for b in backends:
            w = args.workers if b != "serial" else 1
            net = (walls["serial"] - zero["serial"][0]) / max(walls[b] - zero[b][0], 1e-9)
            rows.append([f"sweep, {b}", w, f"{walls[b]:.2f}",
                         f"{walls['serial'] / walls[b]:.2f}x", f"{net:.2f}x",
                         f"{walls[b] * w / 16:.3f}", mark(loads[b])])
        print(f"\nA. 16 runs of N = 100 Couzin fish, {steps} steps each "
              f"(core-seconds per run = wall x workers / 16)")
        print(table(["what", "workers", "wall (s)", "serial / this",
                     "same, start-up excluded", "core-s per run", "others (cores)"], rows))
        print("(start-up excluded: both walls minus the wall of the same backend's 16-run "
              "steps=0 sweep, table B)")
        print(f"\nB. Overhead per run: serial sweep vs plain loop "
              f"{(walls['serial'] - loop_wall) / 16 * 1e3:+.1f} ms per run")
        rows = [[f"sweep of 16 steps=0 runs, {b}", args.workers if b != "serial" else 1,
                 f"{zero[b][0]:.2f}", f"{zero[b][0] / 16 * 1e3:.0f}", mark(zero[b][1])]
                for b in backends]
        print(table(["what", "workers", "wall (s)", "ms per run (start-up included)",
                     "others (cores)"], rows))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
