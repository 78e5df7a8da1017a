"""Throughput of simcore's 3D Couzin engine, against an all-pairs kernel and dewi-kadita 0.0.4.

What is measured (agent-steps per second = agents × steps / wall time; compile time is
excluded, every timing is the best of several repeats after a warm-up):

A. **Anchor comparison.** dewi-kadita's configs/case4 parameters (simcore preset
   ``dewi_highly_parallel``, rule "dewi": N = 250 in a periodic cube of side 35) with the
   cube scaled to keep the number density ρ = 250/35³ fixed, N = 250 ... 10^5. Each N is
   timed with simcore's cell lists and with its all-pairs reference search (same kernel,
   every agent a candidate: ns per candidate pair = time / N² per step), at each thread
   count. The all-pairs search is skipped above N = 10^4.
B. **dewi-kadita 0.0.4**, installed by this script into its own virtual environment,
   runs the same N, box, parameters, initial condition (same seed) and number of steps
   for N = 250 and 1000, at its default thread count and at one thread; the ratios
   simcore / dewi-kadita are checked against the targets (>= 100x at 250 fish,
   >= 300x at 1000 fish), fastest simcore against fastest dewi-kadita.
C. **Linear scaling at fixed density.** Couzin 2002 ``highly_parallel`` parameters
   (r_a = 27) in a periodic cube at ρ = 0.001 and 0.01, N = 10^3, 10^4, 10^5, a few
   steps from the uniform random start: the cost per agent-step should not grow with N.
D. **Cohesive school.** N = 2000 agents, open space, all within r_a of one another
   (a cube of diagonal 0.95·r_a, r_a = 14, r_o = 6, no noise), one step repeated from
   the same state: the neighbour search cannot prune anything, so cell lists should
   cost about what the all-pairs kernel costs per pair (3-5 ns in float64; float32 plans
   this school as all pairs, one cell per axis).

E. **Whole runs against whole runs**, what a user times: ``simcore.run("couzin",
   preset="dewi_highly_parallel", overrides={"n": N}, steps=S, write_every=10)`` (state,
   kernels, frame log, checkpoints, the NetCDF file) against dewi-kadita's
   ``CouzinSolver.solve(n_steps=S, save_interval=10)`` followed by its
   ``DataHandler.save_netcdf`` (its run without the entropy metrics, CSVs and
   animation), same parameters and seed, N = 250 (S = 4000) and 1000 (S = 400); each
   after one untimed warm-up run (JIT), best of up to 3, dewi-kadita at its default
   thread count and simcore at each thread count.

Each simcore timing runs a segment of ``steps`` steps from a fresh copy of the initial
state (so every repeat and every method simulates the same trajectory); short segments
are repeated within a timing so that it lasts about a second.

The machine may be shared: before each timing the script waits (up to ``--max-wait``
seconds) until other processes use less than a quarter of a core, and every row shows
the cores other processes used while it was measured ("others"); rows marked * were
measured under load and are unreliable, threaded ones above all.

Run ``python benchmarks/couzin.py`` (about 5-10 minutes on 2 cores plus the one-off
dewi-kadita install) or ``--quick --no-dewi`` for a smoke test (< 1 minute).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

import _common
from _common import (ForeignLoad, best_time, headline, log, machine_header, table, venv_python, verdict,
                     wait_quiet)
from simcore.models import couzin
from simcore.rng import kernel_key

SEED = 789  # the case-4 preset's seed
DEWI_VERSION = "0.0.4"
DEWI_STEPS = 100  # steps timed at N = 250 and 1000, by both codes
TARGETS = {250: 100.0, 1000: 300.0}  # simcore / dewi-kadita agent-steps/s
LINEAR_TOLERANCE = 1.5  # accepted growth of the per-agent cost from 10^4 to 10^5
# ns per candidate pair, cohesive school, one thread: float64 the upper end of the all-pairs
# kernel's 3-5 ns; float32 issue 16's "<= 1 ns" (8 lanes per AVX2 instruction)
PAIR_COST_TARGET_NS = {"float64": 5.0, "float32": 1.0}
QUIET_CORES = 0.25  # other processes' load below which a timing counts as clean

# steps per timed segment, (full run, quick run): per N for A, any N for C; D times one step
STEPS_A = {250: (DEWI_STEPS, 20), 1000: (DEWI_STEPS, 10), 2000: (20, 5), 10_000: (3, 1),
           100_000: (2, 1)}
STEPS_C = (2, 1)
ALL_PAIRS_MAX_N = 10_000


@dataclass(frozen=True)
class Settings:
    """How to time: thread counts, repeats, seconds per repeat, wait for a quiet machine."""

    threads: tuple[int, ...]
    quick: bool
    repeats: int
    target_s: float
    max_wait: float


def case4_params(n: int) -> couzin.Params:
    """Case-4 ("dewi") parameters for ``n`` fish at the case-4 number density 250/35³."""
    preset = couzin.PRESETS["dewi_highly_parallel"]
    base = {k: v for k, v in preset.items() if k not in ("steps", "seed")}
    return couzin.Params(**dict(base, n=n, box=preset["box"] * (n / preset["n"]) ** (1 / 3)))


def dense_periodic_params(n: int, density: float) -> couzin.Params:
    """Couzin 2002 highly-parallel parameters, ``n`` agents in a periodic cube at ``density``."""
    preset = couzin.PRESETS["highly_parallel"]
    return couzin.Params(**dict(preset, n=n, boundary="periodic", box=(n / density) ** (1 / 3)))


def cohesive_params(n: int) -> couzin.Params:
    """Open space, ``n`` agents in a cube whose diagonal is 0.95·r_a (all within r_a)."""
    r_a = 14.0
    return couzin.Params(n=n, r_r=1.0, r_o=6.0, r_a=r_a, noise=0.0,
                         init_size=0.95 * r_a / math.sqrt(3))


def grid_label(params: couzin.Params) -> str:
    """The cell grid simcore picks for a periodic box, e.g. '11³, reach 2'."""
    _, _, ncell, reach = couzin.cell_plan(params, np.zeros((1, 3)))
    return "one cell" if ncell[0] == 1 else f"{ncell[0]}³, reach {reach[0]}"


def quiet(run, settings: Settings) -> tuple[object, float]:
    """``run()`` after waiting for a quiet machine whose host runs two threads together
    (:func:`_common.threads_together`); (its result, others' cores meanwhile). A run
    after which the host ran the threads apart is run once more, and the result of a
    run with the threads together kept (a 2-vCPU VM's hypervisor can run its vCPUs one
    at a time for 5-60 s, halving threaded timings: benchmarks/RESULTS.md, session 40)."""
    for attempt in range(2):
        if settings.max_wait > 0:
            wait_quiet(settings.max_wait, QUIET_CORES)
            _common.wait_threads_together(settings.max_wait)
        load = ForeignLoad()
        result = run()
        cores = load.cores()
        together = _common.threads_together()
        if together >= _common.THREADS_APART:
            return result, cores
        if attempt == 0:
            log(f"     (the host ran two threads at {together:.2f}x together: measuring again)")
    log("     (the host still ran the threads apart: this timing is the host's)")
    return result, cores


def time_simcore(params: couzin.Params, steps: int, threads: int, all_pairs: bool,
                 settings: Settings) -> tuple[float, float]:
    """(Seconds per ``steps``-step segment from the seeded initial state, others' cores).

    ``threads`` > 1 selects the threaded kernel with that many Numba threads, 1 the
    serial kernel.
    """
    numba.set_num_threads(threads)
    initial = couzin.init_state(params, SEED)
    key = kernel_key(SEED)

    def run():
        state = {name: array.copy() for name, array in initial.items()}
        couzin.advance(state, params, key, 0, steps, all_pairs=all_pairs,
                       parallel=threads > 1)

    (seconds, _), others = quiet(lambda: best_time(run, settings.repeats, settings.target_s),
                                 settings)
    return seconds, others


def fmt_rate(x: float) -> str:
    """Agent-steps/s with a k/M suffix."""
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def fmt_load(cores: float) -> str:
    """Others' cores, starred when the timing was not clean."""
    return f"{cores:.2f}" + ("*" if cores >= QUIET_CORES else "")


# ---------------------------------------------------------------- A: anchor comparison
def bench_anchor(sizes, settings: Settings) -> tuple[str, dict]:
    """System A: case-4 parameters at fixed density. Returns (table, {(n, threads): rate})."""
    rows, rates = [], {}
    for n in sizes:
        params = case4_params(n)
        steps = STEPS_A[n][1 if settings.quick else 0]
        searches = [(f"cell lists ({grid_label(params)})", False)]
        if n <= ALL_PAIRS_MAX_N:
            searches.append(("all pairs", True))
        for label, all_pairs in searches:
            for threads in settings.threads:
                seconds, others = time_simcore(params, steps, threads, all_pairs, settings)
                rate = n * steps / seconds
                if not all_pairs:
                    rates[n, threads] = rate
                pair_ns = f"{seconds / steps / n**2 * 1e9:.2f}" if all_pairs else ""
                rows.append([n, f"{params.box:.1f}", steps, label, threads, fmt_rate(rate),
                             f"{1e9 / rate:.0f}", pair_ns, fmt_load(others)])
                log(f"  A  N={n} {label} {threads} thr: {fmt_rate(rate)} agent-steps/s")
    headers = ["N", "L", "steps", "search", "threads", "agent-steps/s", "ns/agent-step",
               "ns/cand. pair", "others"]
    return table(headers, rows, "rrrlrrrrr"), rates


# ---------------------------------------------------------------- B: dewi-kadita
_DEWI_TIMER = r"""
import json, sys, time
cfg = json.loads(sys.argv[1])
import numba
from dewi_kadita.core.solver import CouzinSolver
from dewi_kadita.core.systems import CouzinSystem

def system(n, box):
    return CouzinSystem(n_fish=n, box_size=box, seed=cfg["seed"], **cfg["params"])

n, box, steps = cfg["n"], cfg["box"], cfg["steps"]
solver = CouzinSolver(dt=cfg["dt"])
solver.solve(system(n, box), n_steps=2, save_interval=2, verbose=False)  # JIT, threads
times = []
while len(times) < 3 and sum(times) < cfg["budget_s"]:
    sim = system(n, box)
    t0 = time.perf_counter()
    solver.solve(sim, n_steps=steps, save_interval=steps, verbose=False)
    times.append(time.perf_counter() - t0)
print(json.dumps({"numba": numba.__version__, "threads": numba.get_num_threads(),
                  "seconds": min(times), "repeats": len(times)}))
"""


def ensure_dewi(venv: Path) -> Path:
    """The Python of a virtual environment holding dewi-kadita 0.0.4 (created if missing)."""
    check = ("import importlib.metadata as m; "
             f"assert m.version('dewi-kadita') == {DEWI_VERSION!r}")
    return venv_python(venv, f"dewi-kadita=={DEWI_VERSION}", check)


def time_dewi(python: Path, n: int, threads: int | None, settings: Settings) -> dict:
    """dewi-kadita's best time for N = ``n`` (``threads`` None: its default thread count)."""
    params = case4_params(n)
    cfg = {
        "seed": SEED, "dt": params.dt, "budget_s": 20.0,
        "n": n, "box": params.box, "steps": STEPS_A[n][0],
        "params": dict(speed=params.speed, r_repulsion=params.r_r,
                       r_orientation=params.r_o, r_attraction=params.r_a,
                       max_turn=params.turning_rate * params.dt, noise=params.noise,
                       blind_angle=(360.0 - params.field_of_view) / 2,
                       orientation_weight=params.orientation_weight),
    }
    env = dict(os.environ)
    env.pop("NUMBA_NUM_THREADS", None)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)

    def run():
        out = subprocess.run([str(python), "-c", _DEWI_TIMER, json.dumps(cfg)], env=env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    result, others = quiet(run, settings)
    return dict(result, n=n, steps=cfg["steps"], others=others, default=threads is None)


_DEWI_WHOLE_RUN = r"""
import json, sys, tempfile, time
from pathlib import Path
cfg = json.loads(sys.argv[1])
from dewi_kadita.core.solver import CouzinSolver
from dewi_kadita.core.systems import CouzinSystem
from dewi_kadita.io.data_handler import DataHandler

def whole_run(steps, path):
    system = CouzinSystem(n_fish=cfg["n"], box_size=cfg["box"], seed=cfg["seed"], **cfg["params"])
    result = CouzinSolver(dt=cfg["dt"]).solve(system, n_steps=steps, save_interval=cfg["every"],
                                              verbose=False)
    DataHandler.save_netcdf(path, result, dict(cfg["params"], n_fish=cfg["n"]), None)

folder = Path(tempfile.mkdtemp())
whole_run(cfg["every"], folder / "warm.nc")  # JIT
times = []
while len(times) < 3 and sum(times) < cfg["budget_s"]:
    t0 = time.perf_counter()
    whole_run(cfg["steps"], folder / f"run{len(times)}.nc")
    times.append(time.perf_counter() - t0)
print(json.dumps({"seconds": min(times), "repeats": len(times)}))
"""
WHOLE_RUN_STEPS = {250: 4000, 1000: 400}
KERNEL_PRECISIONS = ("float64", "float32")  # float64: the default, matches dewi to 1e-9
WHOLE_RUN_EVERY = 10


def bench_whole_runs(python: Path | None, settings: Settings) -> str:
    """System E: simcore.run against dewi-kadita's solve + save_netcdf, whole runs."""
    import tempfile

    import simcore

    folder = Path(tempfile.mkdtemp(prefix="simcore-bench-couzin-"))
    rows = []
    for n, steps in WHOLE_RUN_STEPS.items():
        params = case4_params(n)
        dewi_s = math.nan
        if python is not None:
            cfg = {"seed": SEED, "dt": params.dt, "budget_s": 60.0, "n": n, "box": params.box,
                   "steps": steps, "every": WHOLE_RUN_EVERY,
                   "params": dict(speed=params.speed, r_repulsion=params.r_r,
                                  r_orientation=params.r_o, r_attraction=params.r_a,
                                  max_turn=params.turning_rate * params.dt,
                                  noise=params.noise,
                                  blind_angle=(360.0 - params.field_of_view) / 2,
                                  orientation_weight=params.orientation_weight)}
            dewi_times = {}
            for dewi_threads in (None, 1):  # its default (all cores), and one thread
                env = dict(os.environ)
                env.pop("NUMBA_NUM_THREADS", None)
                if dewi_threads is not None:
                    env["NUMBA_NUM_THREADS"] = str(dewi_threads)

                def dewi(cfg=cfg, env=env):
                    out = subprocess.run([str(python), "-c", _DEWI_WHOLE_RUN, json.dumps(cfg)],
                                         env=env, capture_output=True, text=True, check=True)
                    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]

                label = f"{dewi_threads} thr" if dewi_threads else "default threads"
                dewi_times[label], _ = quiet(dewi, settings)
                log(f"  E  dewi-kadita whole run N={n}, {steps} steps, {label}: "
                    f"{dewi_times[label]:.2f} s")
            dewi_label = min(dewi_times, key=dewi_times.get)  # its fastest thread count
            dewi_s = dewi_times[dewi_label]
        for precision in KERNEL_PRECISIONS:
            for threads in settings.threads:
                kw = dict(preset="dewi_highly_parallel", steps=steps,
                          write_every=WHOLE_RUN_EVERY, threads=threads, overwrite=True,
                          overrides={"n": n, "box": params.box, "kernel_precision": precision})
                simcore.run("couzin", out=folder / "warm.nc", **dict(kw, steps=WHOLE_RUN_EVERY))

                def one(kw=kw):
                    t0 = time.perf_counter()
                    simcore.run("couzin", out=folder / "run.nc", **kw)
                    return time.perf_counter() - t0

                def best():
                    return min(one() for _ in range(settings.repeats))

                simcore_s, others = quiet(best, settings)
                ratio = dewi_s / simcore_s
                rows.append([n, steps, precision, threads, f"{simcore_s:.3f}",
                             f"{dewi_s:.2f} ({dewi_label})" if python else "-",
                             f"{ratio:.0f}x", fmt_load(others)])
                log(f"  E  simcore whole run N={n}, {precision}, {threads} thr: "
                    f"{simcore_s:.3f} s ({ratio:.0f}x)")
                if n in TARGETS and python is not None:
                    headline("couzin", f"whole run simcore {precision} {threads} thr / "
                             f"dewi-kadita fastest, N = {n}", ratio, "x", TARGETS[n])
    return table(["N", "steps", "simcore kernel", "simcore threads", "simcore s",
                  "dewi-kadita s (fastest)", "dewi / simcore", "others (simcore)"], rows,
                 "rrlrrrrr")


def bench_dewi(python: Path, rates: dict, settings: Settings) -> str:
    """System B: dewi-kadita at N = 250, 1000; ratios and target verdicts."""
    runs = []
    for threads in (None, 1):
        for n in TARGETS:
            log(f"  B  dewi-kadita N={n}, NUMBA_NUM_THREADS={threads or 'default'} ...")
            runs.append(time_dewi(python, n, threads, settings))
    headers = ["N", "steps", "dewi threads", "dewi s", "dewi agent-steps/s"] + \
              [f"simcore {t} thr / dewi" for t in settings.threads] + ["others"]
    rows, best_dewi = [], {}
    for run in sorted(runs, key=lambda r: (r["n"], not r["default"])):
        n, rate = run["n"], run["n"] * run["steps"] / run["seconds"]
        best_dewi[n] = max(best_dewi.get(n, 0.0), rate)
        rows.append([n, run["steps"], f"{run['threads']}" + (" (default)" if run["default"]
                                                             else ""),
                     f"{run['seconds']:.2f}", fmt_rate(rate)]
                    + [f"{rates[n, t] / rate:.0f}x" for t in settings.threads]
                    + [fmt_load(run["others"])])
    lines = [f"dewi-kadita {DEWI_VERSION} (numba {runs[0]['numba']}, its own venv), same N, "
             "L, parameters, seed and steps; best of up to 3 runs:",
             table(headers, rows), "", "Targets (fastest simcore / fastest dewi-kadita):"]
    for n, target in TARGETS.items():
        best = max(rates[n, t] for t in settings.threads)
        ratio = best / best_dewi[n]
        lines.append(f"  N = {n}: {fmt_rate(best)} / {fmt_rate(best_dewi[n])} = {ratio:.0f}x, "
                     f"target >= {target:.0f}x: {verdict(ratio >= target)}")
        headline("couzin", f"simcore / dewi-kadita, N = {n}", ratio, "x", target)
    return "\n".join(lines)


# ---------------------------------------------------------------- C: linear scaling
def bench_linear(sizes, densities, settings: Settings) -> str:
    """System C: per-agent cost against N at fixed density (periodic, highly parallel)."""
    steps = STEPS_C[1 if settings.quick else 0]
    rows, cost = [], {}
    for density in densities:
        for n in sizes:
            params = dense_periodic_params(n, density)
            row, loads = [density, n, f"{params.box:.0f}", grid_label(params), steps], []
            for threads in settings.threads:
                seconds, others = time_simcore(params, steps, threads, False, settings)
                cost[density, n, threads] = seconds / steps / n * 1e9
                row.append(f"{cost[density, n, threads]:.0f}")
                loads.append(fmt_load(others))
                log(f"  C  rho={density} N={n} {threads} thr: "
                    f"{cost[density, n, threads]:.0f} ns/agent-step")
            rows.append(row + [" / ".join(loads)])
    headers = ["rho", "N", "L", "cells", "steps"] + [f"ns/agent-step {t} thr"
                                                     for t in settings.threads] + ["others"]
    lines = [table(headers, rows), "",
             f"Per-agent cost growth (target: linear, <= {LINEAR_TOLERANCE}x from "
             f"N = {sizes[-2]} to {sizes[-1]}):"]
    for density in densities:
        for threads in settings.threads:
            top = cost[density, sizes[-1], threads]
            growth = [f"N={sizes[-1]} / N={m} = {top / cost[density, m, threads]:.2f}x"
                      for m in sizes[-2::-1]]
            mid = top / cost[density, sizes[-2], threads]
            lines.append(f"  rho = {density}, {threads} thr: {', '.join(growth)}: "
                         f"{verdict(mid <= LINEAR_TOLERANCE)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- D: cohesive school
def bench_cohesive(n: int, settings: Settings) -> str:
    """System D: everyone within r_a; ns per candidate pair (N² per step) by search and
    kernel precision."""
    rows, pair_ns = [], {}
    for precision in KERNEL_PRECISIONS:
        params = cohesive_params(n).model_copy(update={"kernel_precision": precision})
        for label, all_pairs in (("cell lists", False), ("all pairs", True)):
            row, loads = [label, precision], []
            for threads in settings.threads:
                seconds, others = time_simcore(params, 1, threads, all_pairs, settings)
                pair_ns[label, precision, threads] = seconds / n**2 * 1e9
                row.append(f"{pair_ns[label, precision, threads]:.2f}")
                loads.append(fmt_load(others))
            rows.append(row + [" / ".join(loads)])
            log(f"  D  {label}, {precision}: {row[2:]} ns/pair")
    headers = ["search", "kernel"] + [f"ns/cand. pair {t} thr" for t in settings.threads] + \
        ["others"]
    one = settings.threads[0]
    plans = []
    for precision in KERNEL_PRECISIONS:
        params = cohesive_params(n).model_copy(update={"kernel_precision": precision})
        _, side, ncell, reach = couzin.cell_plan(params, couzin.init_state(params, SEED)["positions"])
        plans.append(f"{precision} " + ("one cell per axis (all pairs)" if ncell[0] == 1 else
                                        f"cells of side {side[0]:.3g}, reach {reach[0]}"))
    lines = [f"N = {n}, open space, cube side {cohesive_params(n).init_size:.2f} (diagonal "
             "0.95 r_a), r_r = 1, r_o = 6, r_a = 14, noise 0, one step from the same state; "
             f"the engine's plan (cell lists): {'; '.join(plans)}:",
             table(headers, rows), ""]
    for precision in KERNEL_PRECISIONS:
        cells = pair_ns["cell lists", precision, one]
        target = PAIR_COST_TARGET_NS[precision]
        headline("couzin", f"ns per candidate pair, {precision}, {one} thr", cells, "ns",
                 target, higher_is_better=False)
        lines.append(f"{precision} at {one} thr: cell lists / all pairs = "
                     f"{cells / pair_ns['all pairs', precision, one]:.2f}x; cell lists "
                     f"{cells:.2f} ns/pair, target <= {target:g} ns: "
                     f"{verdict(cells <= target)}")
    return "\n".join(lines)


def main(argv=None) -> None:
    """Parse the options, run the benchmarks and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="N <= 2000, short timings, no dewi-kadita (smoke test, < 1 min)")
    parser.add_argument("--no-dewi", action="store_true", help="skip dewi-kadita")
    parser.add_argument("--threads", default=None,
                        help="comma-separated Numba thread counts (default: 1 and the maximum)")
    parser.add_argument("--dewi-venv", type=Path,
                        default=Path("/tmp/simcore-bench-dewi-kadita-venv"),
                        help="virtual environment for dewi-kadita (created if missing)")
    parser.add_argument("--max-wait", type=float, default=None,
                        help="seconds to wait for a quiet machine before each timing "
                             "(default 60, --quick 0: no wait)")
    parser.add_argument("--sections", default="ABCDE",
                        help="which sections to run, e.g. DE (default all: ABCDE)")
    args = parser.parse_args(argv)
    sections = set(args.sections.upper())

    max_threads = numba.config.NUMBA_NUM_THREADS
    if args.threads:
        thread_counts = tuple(sorted({int(t) for t in args.threads.split(",")}))
        if thread_counts[0] < 1 or thread_counts[-1] > max_threads:
            parser.error(f"thread counts must lie in 1..{max_threads}")
    else:
        thread_counts = tuple(sorted({1, max_threads}))
    max_wait = args.max_wait if args.max_wait is not None else (0.0 if args.quick else 60.0)
    if args.quick:
        settings = Settings(thread_counts, True, 2, 0.1, max_wait)
        sizes_a, sizes_c = [250, 1000, 2000], [1000, 2000]
    else:
        settings = Settings(thread_counts, False, 3, 1.0, max_wait)
        sizes_a, sizes_c = list(STEPS_A), [1000, 10_000, 100_000]
    with_dewi = not (args.quick or args.no_dewi)

    started, load = time.perf_counter(), ForeignLoad()
    dewi_python = ensure_dewi(args.dewi_venv) if with_dewi else None
    report = [machine_header("simcore Couzin throughput (benchmarks/couzin.py"
                             + (" --quick" if args.quick else "") + ")"),
              f"numba {numba.__version__}, thread counts {list(thread_counts)}; timings: best "
              f"of {settings.repeats} after a warm-up, ~{settings.target_s:g} s each; "
              f"'others': cores used by other processes meanwhile (* >= {QUIET_CORES}: "
              "unreliable)", ""]

    rates = {}
    if "A" in sections or "B" in sections:
        text_a, rates = bench_anchor(sizes_a, settings)
        report += ["A. dewi case-4 parameters (rule 'dewi', r_a = 20), periodic cube at "
                   f"rho = 250/35^3 = {250 / 35**3:.5f}", text_a, ""]
    if "B" in sections:
        report += ["B. " + (bench_dewi(dewi_python, rates, settings) if with_dewi
                            else "dewi-kadita: skipped"), ""]
    if "C" in sections:
        report += ["C. Fixed density, Couzin 2002 highly_parallel (r_a = 27), periodic cube",
                   bench_linear(sizes_c, [0.001, 0.01], settings), ""]
    if "D" in sections:
        report += ["D. Cohesive school (everyone within r_a)", bench_cohesive(2000, settings),
                   ""]
    if not args.quick and "E" in sections:
        report += ["E. Whole runs (simcore.run with its file against dewi-kadita's solve + "
                   f"save_netcdf), a frame every {WHOLE_RUN_EVERY} steps, targets as in B",
                   bench_whole_runs(dewi_python, settings), ""]
    report.append(f"total wall time {time.perf_counter() - started:.0f} s; {load.note()}")
    print("\n".join(report))


if __name__ == "__main__":
    main()
