"""Helpers shared by the benchmark scripts: machine description, timing, plain tables."""

from __future__ import annotations

import datetime
import functools
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from simcore._cpu import ForeignLoad  # noqa: F401  (re-exported for the benchmark scripts)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's best guess)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_header(title: str) -> str:
    """A header naming the benchmark, the date, the core count, the CPU, the Python and
    the current load."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"{title}\n"
            f"date: {now}; cores (os.cpu_count): {os.cpu_count()}; CPU: {cpu_model()}\n"
            f"python {platform.python_version()} ({sys.executable})\n"
            f"{load_note()}")


def load_note() -> str:
    """Cores used by other processes over one second, flagged when they compete."""
    probe = ForeignLoad()
    time.sleep(1.0)
    cores = probe.cores()
    note = f"other processes at start: {cores:.2f} cores (1 s sample)"
    if cores >= 0.25:
        note += " -- timings, multi-threaded ones above all, may be unreliable"
    return note


def wait_quiet(max_wait: float, quiet_cores: float = 0.25) -> float:
    """Wait until other processes use < ``quiet_cores`` cores (1 s samples), at most
    ``max_wait`` seconds; return the load of the last sample."""
    deadline = time.perf_counter() + max_wait
    while True:
        probe = ForeignLoad()
        time.sleep(1.0)
        cores = probe.cores()
        if cores < quiet_cores or time.perf_counter() >= deadline:
            return cores


#: below this, :func:`threads_together` says the host runs the threads apart
THREADS_APART = 0.75


def threads_together(threads: int = 2, regions: int = 2000) -> float:
    """How fast parallel regions run on ``threads`` threads against one thread (each
    region an FMA over 16384 doubles: mostly a region's fork and join): ~1 on a host that
    runs the threads at the same time, ~0.5 on a VM whose vCPUs the hypervisor does not
    run together, which no load reading shows (phases of 5-60 s on a 2-vCPU Zen 4 VM,
    benchmarks/RESULTS.md, session 40). Below :data:`THREADS_APART` a threaded timing is
    not the code's."""
    import numba
    import numpy as np

    if threads < 2 or numba.config.NUMBA_NUM_THREADS < threads:
        return 1.0
    kernel = _regions_kernel()
    x = np.ones(16384)
    before = numba.get_num_threads()
    seconds = {}
    try:
        for count in (threads, 1):
            numba.set_num_threads(count)
            kernel(x, 10)  # (compiled on first use; the thread pool started)
            t0 = time.perf_counter()
            kernel(x, regions)
            seconds[count] = time.perf_counter() - t0
    finally:
        numba.set_num_threads(before)
    return seconds[1] / seconds[threads]


def wait_threads_together(max_wait: float, threads: int = 2) -> float:
    """Wait (at most ``max_wait`` s) until :func:`threads_together` reaches
    :data:`THREADS_APART`; return its last value."""
    deadline = time.perf_counter() + max_wait
    while True:
        together = threads_together(threads)
        if together >= THREADS_APART or time.perf_counter() >= deadline:
            return together
        time.sleep(0.5)


@functools.cache
def _regions_kernel():
    """A Numba kernel of ``reps`` parallel regions over ``x`` (compiled once a process)."""
    from numba import njit, prange

    @njit(parallel=True)
    def regions(x, reps):
        for _ in range(reps):
            for i in prange(x.shape[0]):
                x[i] = x[i] * 0.999 + 0.001
        return x[0]

    return regions


def best_time(run, repeats: int, target_s: float) -> tuple[float, int]:
    """Best-of-``repeats`` seconds per call of ``run()``, and the calls per repeat.

    ``run()`` is called once untimed (warm-up: JIT loading, thread pool start), once
    timed to size a repeat to about ``target_s`` seconds, then ``repeats`` times in
    blocks of that many calls; the best block mean is returned.
    """
    run()
    t0 = time.perf_counter()
    run()
    probe = time.perf_counter() - t0
    calls = max(1, round(target_s / max(probe, 1e-9)))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best, calls


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A Markdown pipe table with padded columns (``align``: 'l'/'r' per column)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(r, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def log(message: str) -> None:
    """Progress on stderr (the report goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    """'met' or 'NOT met'."""
    return "met" if ok else "NOT met"


def ratio(a: float | None, b: float | None) -> str:
    """a / b to two decimals, or '-' when either is missing."""
    return "-" if not a or not b else f"{a / b:.2f}"


def venv_python(venv: Path, spec: str, check: str) -> Path:
    """The Python of the virtual environment ``venv`` in which the anchor ``spec`` (a pip
    requirement) is installed and the Python snippet ``check`` runs; the environment is
    created and the anchor installed when it is missing (needs the package index once)."""
    python = venv / "bin" / "python"
    if python.exists():
        ok = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
        if ok.returncode == 0:
            return python
    log(f"installing {spec} into {venv} (a few minutes) ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run([str(python), "-m", "pip", "install", "--quiet", spec],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pip install {spec} failed:\n{out.stdout[-2000:]}"
                           f"{out.stderr[-2000:]}")
    ok = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    if ok.returncode != 0:
        raise RuntimeError(f"{spec} does not work after installing it:\n{ok.stderr[-2000:]}")
    return python


SUMMARY_ENV = "SIMCORE_BENCH_SUMMARY"


def headline(benchmark: str, what: str, value: float, unit: str, target: float | None = None,
             higher_is_better: bool = True) -> None:
    """Record one headline number of a benchmark (``make bench`` collects them into one
    table and a JSON file, see benchmarks/summary.py): appended as a JSON line to the file
    named by $SIMCORE_BENCH_SUMMARY, if set."""
    import json

    path = os.environ.get(SUMMARY_ENV)
    if not path:
        return
    met = None if target is None else bool(value >= target if higher_is_better else value <= target)
    record = {"benchmark": benchmark, "what": what, "value": float(value), "unit": unit,
              "target": target, "higher_is_better": higher_is_better, "met": met,
              "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
              "cores": os.cpu_count()}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
