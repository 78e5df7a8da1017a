"""A run on the command line against the same run in a warm process: what starting costs.

``simcore run MODEL -o OUT`` pays, before its first step, the interpreter, the imports
(simcore, NumPy, Numba), Numba's own set-up at the first compiled call (its typing and
lowering registries; its BLAS probe's SciPy module is preloaded by ``import simcore``
without the rest of ``scipy.linalg``) and the loading of the engine's cached
machine code; a notebook or a sweep worker pays them once. For each model at its
defaults this script times, interleaved over ``--repeats`` rounds (medians):

* command line: ``python -m simcore.cli run MODEL -o OUT --quiet`` as a subprocess (the
  Numba cache is warm: a first run was made before timing);
* in process:   ``simcore.run(MODEL, out=OUT, quiet=True)`` in this process, after a first
  run (the engine compiled/loaded, its writer worker started);
* import:       ``python -c "import simcore"`` as a subprocess, and whether it loaded
  xarray (it should not: the ``ds.simcore`` accessor is registered when xarray loads).

It prints the start-up cost (command line - in process) and the ratio command line / in
process. Then, for each model, **the first run after installing**: the same command line
once with an empty Numba cache (``NUMBA_CACHE_DIR`` a new folder), which compiles the
engine's kernels for this CPU, as a fresh installation's (or an update's) first run does;
``--no-cold`` skips it (~20 s a model on 2 cores).

    python benchmarks/startup.py [--repeats 5] [--models harddisc,couzin,abp] [--no-cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import headline, machine_header  # noqa: E402

import simcore  # noqa: E402


def _wall(command: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def _first_run_after_installing(command: list[str]) -> float:
    """Wall seconds of ``command`` with an empty Numba cache: the kernels compiled."""
    with tempfile.TemporaryDirectory(prefix="simcore-numba-cache-") as cache:
        return _wall(command, env={**os.environ, "NUMBA_CACHE_DIR": cache})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="harddisc,couzin,abp")
    parser.add_argument("--no-cold", action="store_true",
                        help="skip the first runs on an empty Numba cache")
    args = parser.parse_args(argv)
    print(machine_header("benchmarks/startup.py: a command-line run against a warm process"))
    probe = ("import sys, time; t = time.perf_counter(); import simcore; "
             "print(time.perf_counter() - t, 'xarray' in sys.modules)")
    imports, xarray_loaded = [], False
    for _ in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                             text=True).stdout.split()
        imports.append(float(out[0]))
        xarray_loaded |= out[1] == "True"
    print(f"import simcore: {statistics.median(imports):.3f} s (median of {args.repeats}); "
          f"xarray loaded by it: {'yes' if xarray_loaded else 'no'}\n")
    print(f"{'model (defaults)':18s} {'command line s':>14s} {'in process s':>12s} "
          f"{'start-up s':>10s} {'ratio':>6s}")
    cold = {}
    with tempfile.TemporaryDirectory(prefix="simcore-startup-") as folder:
        for model in args.models.split(","):
            out = Path(folder) / f"{model}.nc"
            cli = [sys.executable, "-m", "simcore.cli", "run", model, "-o", str(out),
                   "--overwrite", "--quiet"]
            _wall(cli)  # the Numba cache filled, as after installation and a first run
            simcore.run(model, out=out, overwrite=True, quiet=True)
            times = {"cli": [], "process": []}
            for _ in range(args.repeats):
                times["cli"].append(_wall(cli))
                t0 = time.perf_counter()
                simcore.run(model, out=out, overwrite=True, quiet=True)
                times["process"].append(time.perf_counter() - t0)
            cli_s = statistics.median(times["cli"])
            process_s = statistics.median(times["process"])
            print(f"{model:18s} {cli_s:14.3f} {process_s:12.3f} {cli_s - process_s:10.3f} "
                  f"{cli_s / process_s:5.2f}x")
            headline("startup", f"command-line run / in-process run, {model} defaults",
                     cli_s / process_s, "x", higher_is_better=False)
            if not args.no_cold:
                cold[model] = (_first_run_after_installing(cli), cli_s)
    if cold:
        print(f"\n{'model (defaults)':18s} {'first run after installing s':>28s} "
              f"{'later runs s':>12s}")
        for model, (first_s, later_s) in cold.items():
            print(f"{model:18s} {first_s:28.1f} {later_s:12.3f}")
            headline("startup", f"first command-line run after installing (empty Numba cache), "
                     f"{model} defaults", first_s, "s", higher_is_better=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
