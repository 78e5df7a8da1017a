"""What the crash-safe store costs: whole runs with it, against the same runs' compute alone
and against the previous store (a NetCDF file appended frame by frame), side by side.

For each case the script times, interleaved over ``--repeats`` rounds (medians):

* compute:  ``advance`` + ``frame`` for every frame, nothing written (the floor);
* simcore:  ``simcore.run`` — the frame log, checkpoints (fsync) and the final NetCDF
  assembly, everything a user's run does, as a process's later runs do it (a notebook, a
  script's loop, a sweep worker): its NetCDF worker process is already started;
* first:    the same as a process's first run (``simcore run`` on the command line): the
  run starts its worker itself (~0.3 s of imports on another core);
* previous: compute + the previous store's write pattern — every frame appended to the
  NetCDF file variable by variable, ``sync`` at every checkpoint (50 frames), as simcore
  wrote until the crash-safe store replaced it (with today's compression settings, so
  that the difference is the crash safety alone).

It prints frames/s written and the store's share of run time, (run - compute) / run,
for later and first runs.
The target (issue 12): under 5 % at the default settings of every model; the write-heavy
case (ABP, N = 65536, a frame every 10 steps) is reported too.

    python benchmarks/store.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import netCDF4
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import headline, machine_header  # noqa: E402

import simcore  # noqa: E402
from simcore.config import resolve  # noqa: E402
from simcore.driver import frame_steps  # noqa: E402
from simcore.io.assembler import release_idle_workers  # noqa: E402
from simcore.io.trajectory import FORMATS, _define, frame_schema  # noqa: E402
from simcore.models import get_engine  # noqa: E402
from simcore.rng import kernel_key  # noqa: E402

# (label, model, resolve() keywords): every model at its defaults, then the write-heavy case
CASES = [
    ("couzin defaults (N=100, 3000 steps, frame/10)", "couzin", {}),
    ("abp defaults (20000 steps, frame/200)", "abp", {}),
    ("harddisc defaults (N=4000, t=100, frame/1)", "harddisc", {}),
    ("linear defaults (rotational_ou, 50000 steps, frame/50)", "linear", {}),
    ("couzin dewi_highly_parallel N=250, 4000 steps, frame/10", "couzin",
     {"preset": "dewi_highly_parallel", "steps": 4000, "overrides": {"n": 250}}),
    ("abp N=65536, 2000 steps, frame/10 (write-heavy)", "abp",
     {"steps": 2000, "write_every": 10, "overrides": {"n": 65536}}),
]


def compute_only(model_name, params, settings, with_previous_store: Path | None = None):
    """Advance and compute every frame as the driver does; optionally write them the way
    the previous store did. Returns seconds."""
    model = get_engine(model_name)
    t0 = time.perf_counter()
    state = model.init_state(params, settings.seed)
    marks = frame_steps(settings.steps, settings.write_every)
    key = kernel_key(settings.seed)
    dt = model.time_per_step(params)
    ds = None
    if with_previous_store is not None:
        schema = frame_schema(params.n, {"program": "simcore"}, model.extra_variables(params),
                              settings.precision,
                              velocities=model.has_velocities)
        ds = netCDF4.Dataset(with_previous_store, "w", format=FORMATS[settings.format])
        _define(ds, schema, settings.format)
        names = [name for name, _, _ in schema["fields"]]
    for f in range(len(marks)):
        if f:
            model.advance(state, params, key, marks[f - 1], marks[f] - marks[f - 1])
        variables = dict(model.frame(state, params), time=marks[f] * dt)
        if ds is not None:
            for name in names:
                ds[name][f] = np.asarray(variables[name], dtype=ds[name].dtype)
            if "cell_angles" in ds.variables:
                ds["cell_angles"][f] = (90.0, 90.0, 90.0)
            if (f + 1) % settings.checkpoint_every == 0:
                ds.sync()
    if ds is not None:
        ds.close()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the first two cases, 1 round")
    parser.add_argument("--threads", type=int, default=1, help="Numba threads (default 1)")
    args = parser.parse_args(argv)
    import numba

    numba.set_num_threads(args.threads)
    cases = CASES[:2] if args.quick else CASES
    repeats = 1 if args.quick else args.repeats
    print(machine_header("benchmarks/store.py: the cost of the crash-safe store"))
    print(f"threads: {args.threads}; rounds: {repeats} (medians); files on "
          f"{tempfile.gettempdir()}\n")
    print(f"{'case':58s} {'frames':>6s} {'compute s':>9s} {'simcore s':>9s} {'share':>6s} "
          f"{'frames/s':>9s} {'first s':>8s} {'share':>6s} {'previous s':>10s} {'share':>6s} "
          f"{'safety':>7s}")
    worst = worst_first = worst_safety = -1.0
    for label, model_name, kw in cases:
        params, settings, preset = resolve(model_name, **kw)
        n_frames = len(frame_steps(settings.steps, settings.write_every))
        folder = Path(tempfile.mkdtemp(prefix="simcore-store-bench-"))
        try:
            simcore.run(model_name, out=folder / "warm.nc", threads=args.threads,
                        **dict(kw, steps=settings.write_every * 2))  # JIT, caches
            times = {"compute": [], "simcore": [], "first": [], "previous": []}
            for r in range(repeats):
                times["compute"].append(compute_only(model_name, params, settings))
                t0 = time.perf_counter()
                simcore.run(model_name, out=folder / f"run{r}.nc", threads=args.threads, **kw)
                times["simcore"].append(time.perf_counter() - t0)
                release_idle_workers()
                time.sleep(0.5)  # the released worker exits; its run left nothing behind
                t0 = time.perf_counter()
                simcore.run(model_name, out=folder / f"first{r}.nc", threads=args.threads, **kw)
                times["first"].append(time.perf_counter() - t0)
                times["previous"].append(compute_only(model_name, params, settings,
                                                      folder / f"prev{r}.nc"))
                for p in folder.glob("*.nc"):
                    p.unlink()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        share = (med["simcore"] - med["compute"]) / med["simcore"]
        first_share = (med["first"] - med["compute"]) / med["first"]
        worst_first = max(worst_first, first_share)
        prev_share = (med["previous"] - med["compute"]) / med["previous"]
        safety = (med["simcore"] - med["previous"]) / med["simcore"]
        worst = max(worst, share)
        worst_safety = max(worst_safety, safety)
        print(f"{label:58s} {n_frames:6d} {med['compute']:9.3f} {med['simcore']:9.3f} "
              f"{share:6.1%} {n_frames / med['simcore']:9.1f} {med['first']:8.3f} "
              f"{first_share:6.1%} {med['previous']:10.3f} "
              f"{prev_share:6.1%} {safety:7.1%}")
    print("\nshare: (run - compute) / run, everything the writing costs (compression included)")
    print("safety: (simcore - previous) / simcore, what the crash safety adds to the previous "
          "store's write pattern (negative: saves time)")
    print(f"largest share of writing in a run: {worst:.1%} (issue 16 target < 5 %)")
    headline("store", "largest share of writing in a run", 100 * worst, "%", 5.0,
             higher_is_better=False)
    print(f"largest share of writing in a process's first run: {worst_first:.1%}")
    headline("store", "largest share of writing in a process's first run", 100 * worst_first,
             "%", 5.0, higher_is_better=False)
    print(f"largest cost of the crash safety: {worst_safety:.1%} (issue 12 target < 5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
