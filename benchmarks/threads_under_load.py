"""Threaded kernels on a shared machine: particle-steps per second on 1 thread and on all
usable cores, with the machine quiet and with one core kept busy by another process, and
the thread count the driver's default picks in each case; then whole runs into which the
busy process arrives ``--late`` seconds after their start, and a loop of short runs beside
it, on the default thread count (which follows the load, ``simcore._cpu.LoadFollower``)
against fixed counts.

    .venv/bin/python benchmarks/threads_under_load.py [--n 16384] [--steps 600]
        [--late-steps 4000]

The busy process is a Python busy loop pinned to the last usable core. Rates are wall-clock
(the point is how long a user waits), best of ``--repeats`` runs after a warm-up run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numba

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import headline, machine_header, table  # noqa: E402

import simcore  # noqa: E402
from simcore._cpu import idle_threads, usable_cores  # noqa: E402


def ns_per_particle_step(folder: Path, n: int, steps: int, threads: int, repeats: int) -> float:
    kw = dict(preset="mips", seed=1, overrides={"n": n}, overwrite=True, threads=threads,
              quiet=True, out=folder / f"t{threads}.nc")
    simcore.run("abp", steps=20, write_every=20, **kw)  # compile, start the thread pool
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        simcore.run("abp", steps=steps, write_every=steps, **kw)
        best = min(best, time.perf_counter() - t0)
    return best / (steps * n) * 1e9


def _busy_process(core: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", (
        f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass")])


def _start_quiet(most: int) -> None:
    """Let the last busy process's load leave the samples, and start on ``most`` threads."""
    time.sleep(0.5)
    idle_threads(most, reuse_seconds=0)  # a fresh start probe: the machine is quiet
    numba.set_num_threads(most)


def late_load_seconds(folder: Path, n: int, steps: int, threads: int | None, late: float,
                      core: int, repeats: int) -> float:
    """Best wall time of a whole run (``threads=None``: the default count) into which a
    busy process pinned to ``core`` arrives ``late`` seconds after its start."""
    most = numba.config.NUMBA_NUM_THREADS
    kw = dict(preset="mips", seed=1, overrides={"n": n}, overwrite=True, threads=threads,
              quiet=True, out=folder / "late.nc")
    simcore.run("abp", steps=20, write_every=20, **kw)  # compile, start the thread pool
    best = float("inf")
    for _ in range(repeats):
        _start_quiet(most)
        arrived: list[subprocess.Popen] = []
        timer = threading.Timer(late, lambda into=arrived: into.append(_busy_process(core)))
        timer.start()
        t0 = time.perf_counter()
        try:
            simcore.run("abp", steps=steps, write_every=200, **kw)
            best = min(best, time.perf_counter() - t0)
        finally:
            timer.cancel()
            timer.join()
            for busy in arrived:
                busy.kill()
                busy.wait()
    return best


def short_runs_seconds(folder: Path, threads: int | None, core: int, runs: int) -> float:
    """Median wall time of the last two thirds of ``runs`` short Couzin runs (N = 250,
    float32 kernel, 400 steps: ~0.05 s each) made one after another in this process with
    a busy process pinned to ``core`` started before the first (``threads=None``: the
    default count)."""
    import statistics
    import warnings

    most = numba.config.NUMBA_NUM_THREADS
    kw = dict(preset="dewi_highly_parallel", steps=400, write_every=10, seed=1,
              overrides={"n": 250, "kernel_precision": "float32"}, overwrite=True,
              quiet=True, threads=threads, out=folder / "short.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the preset's r_a beyond half the box: expected
        for _ in range(3):
            simcore.run("couzin", **kw)
        _start_quiet(most)
        busy = _busy_process(core)
        seconds = []
        try:
            for _ in range(runs):
                t0 = time.perf_counter()
                simcore.run("couzin", **kw)
                seconds.append(time.perf_counter() - t0)
        finally:
            busy.kill()
            busy.wait()
    return statistics.median(seconds[runs // 3:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--late-steps", type=int, default=4000,
                    help="steps of the runs the busy process arrives in (several seconds)")
    ap.add_argument("--late", type=float, default=0.3,
                    help="seconds after a run's start that the busy process arrives")
    ap.add_argument("--short-runs", type=int, default=60,
                    help="short Couzin runs in a loop beside the busy process")
    args = ap.parse_args()
    print(machine_header("simcore threads under foreign load (benchmarks/threads_under_load.py)"))
    most = numba.config.NUMBA_NUM_THREADS
    core = usable_cores()[-1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for loaded in (False, True):
            busy = None
            if loaded:
                busy = _busy_process(core)
                time.sleep(0.5)
            try:
                picked, seen = idle_threads(most, reuse_seconds=0)  # sample each case now
                for threads in sorted({1, most}):
                    ns = ns_per_particle_step(Path(tmp), args.n, args.steps, threads,
                                              args.repeats)
                    rows.append(["one core busy" if loaded else "quiet", threads, f"{ns:.1f}",
                                 f"{seen:.2f}", picked])
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print(f"\nABP `mips` preset, N = {args.n}, {args.steps} steps; ns per particle-step "
          f"(wall clock, best of {args.repeats})\n")
    print(table(["machine", "threads", "ns/particle-step", "busy cores seen", "default picks"],
                rows))
    by = {(r[0], r[1]): float(r[2]) for r in rows}
    if most > 1:
        for state in ("quiet", "one core busy"):
            print(f"{state}: {most} threads are {by[(state, 1)] / by[(state, most)]:.2f}x "
                  "the speed of 1 thread")
    if most < 2:
        return
    late = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, threads in (("default (follows the load)", None), (f"{most} (fixed)", most),
                               ("1 (fixed)", 1)):
            late[label] = late_load_seconds(Path(tmp), args.n, args.late_steps, threads,
                                            args.late, core, args.repeats)
    print(f"\nWhole runs, `mips` N = {args.n}, {args.late_steps} steps, a busy process "
          f"arriving {args.late} s after each run's start (seconds, best of {args.repeats})\n")
    print(table(["threads", "whole run s"], [[k, f"{v:.3f}"] for k, v in late.items()]))
    gain = late[f"{most} (fixed)"] / late["default (follows the load)"]
    print(f"load arriving mid-run: the default is {gain:.2f}x the speed of {most} fixed threads")
    headline("threads", f"load arriving mid-run, ABP N = {args.n}: default / {most} fixed "
             "threads", gain, "x", 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        short = {label: short_runs_seconds(Path(tmp), threads, core, args.short_runs)
                 for label, threads in (("default (follows the load)", None),
                                        (f"{most} (fixed)", most), ("1 (fixed)", 1))}
    print(f"\nA loop of {args.short_runs} short runs (Couzin `dewi_highly_parallel`, N = 250, "
          "float32 kernel, 400 steps) beside a busy process started before it (median of "
          "the last two thirds, seconds a run)\n")
    print(table(["threads", "s a run"], [[k, f"{v:.3f}"] for k, v in short.items()]))
    gain = short[f"{most} (fixed)"] / short["default (follows the load)"]
    print(f"short runs beside a busy process: the default is {gain:.2f}x the speed of {most} "
          "fixed threads")
    headline("threads", f"short runs beside a busy process, Couzin N = 250: default / {most} "
             "fixed threads", gain, "x", 1.0)


if __name__ == "__main__":
    main()
