"""Running a sweep: every missing run, on the chosen backend, resumable."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Mapping


from simcore._cpu import usable_cores
from simcore._errors import UserInputError, bad_paths_are_user_errors
from simcore._interrupt import RunInterrupted
from simcore.io.lock import OutputLock
from simcore.sweep._common import BACKENDS, JOB_SCHEDULERS, MANIFEST, SweepFailed
from simcore.sweep.cluster import (ClusterOptions, _mp_context, _require_dask, _require_jobqueue,
                                   _start_dask)
from simcore.sweep.manifest import Manifest, _file_state
from simcore.sweep.plan import Plan, plan_sweep


_INTERRUPTED = False  # set in a worker process once Ctrl-C reached it


def _run_task(task: dict) -> dict:
    """Run one sweep run (in whichever process or worker) and report how it went.

    Never raises for a failed run: the error text is returned so the sweep goes on.
    A KeyboardInterrupt (Ctrl-C, or the driver's test hook) is reported as 'interrupted',
    and every later task given to the same process is then returned unstarted, so that
    runs already queued in a process pool do not start after the user pressed Ctrl-C.
    """
    global _INTERRUPTED
    from simcore.config import split_run_parameters
    from simcore.driver import run_model

    t0 = time.perf_counter()
    signum = None
    if _INTERRUPTED:
        return {"index": task["index"], "state": "interrupted", "error": "interrupted",
                "wall_s": 0.0}
    try:
        _numba_reads_its_threads()
        model, params, settings, preset = split_run_parameters(task["run_parameters"])
        run_model(model, params, settings, task["out"], preset=preset, resume=True,
                  threads=task["threads"], quiet=True, argv=task["argv"])
        state, error = "done", None
    except KeyboardInterrupt as exc:
        state, error = "interrupted", "interrupted"
        signum = getattr(exc, "signum", signal.SIGINT)
        _INTERRUPTED = bool(task.get("stop_on_interrupt", False))
    except UserInputError as err:
        state, error = "failed", str(err)
    except Exception:  # noqa: BLE001 - one run's failure must not stop the sweep
        state, error = "failed", traceback.format_exc()
    return {"index": task["index"], "state": state, "error": error, "signum": signum,
            "wall_s": round(time.perf_counter() - t0, 4)}


def _in_a_workers_rerun_of_the_script() -> bool:
    """True inside a multiprocessing worker's run of the main script's top level (it is
    imported as ``__mp_main__``, to find the functions it defines): a call there is a
    script's unguarded sweep, which would start a sweep in every worker."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            return True
        frame = frame.f_back
    return False


def _init_worker(threads: int | None) -> None:  # pragma: no cover - runs in the workers
    """Size a pool worker's Numba thread pool to ``threads``."""
    if threads is not None:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
        _numba_reads_its_threads()


def _numba_reads_its_threads() -> None:
    """Make Numba's thread count agree with ``NUMBA_NUM_THREADS`` in this worker's
    environment. A worker sets the variable (or dask does) after Numba was imported
    (unpickling a task imports simcore), and Numba reads it again only when it next
    compiles. Had a run launched the threads with the old count meanwhile, the first kernel
    compiled (a fresh install's cold cache) would fail with "Cannot set NUMBA_NUM_THREADS
    to a different value once the threads have been launched". So it is read now; if the
    threads run already, the variable is set back to their count (a run then uses fewer
    with ``numba.set_num_threads``)."""
    if "NUMBA_NUM_THREADS" not in os.environ or "numba" not in sys.modules:
        return
    from numba.core import config

    try:
        config.reload_config()
    except RuntimeError:  # the threads were launched with another count
        os.environ["NUMBA_NUM_THREADS"] = str(config.NUMBA_NUM_THREADS)
        config.reload_config()


@bad_paths_are_user_errors()
def run_sweep(
    spec: Mapping[str, Any] | str | Path,
    *,
    backend: str = "serial",
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    out: str | Path | None = None,
    cluster: ClusterOptions | None = None,
    quiet: bool = True,
    argv: list[str] | None = None,
) -> Path:
    """Run every missing run of a sweep; return the sweep folder.

    ``spec`` is a sweep TOML path or a dict with the same content (see the module
    docstring). ``backend``: ``serial``, ``processes`` or ``dask``; ``scheduler`` (dask
    only): None/``local`` (a LocalCluster of ``workers`` processes), ``tcp://HOST:PORT``,
    or ``slurm``/``pbs`` (dask-jobqueue, settings in ``cluster``). ``workers`` defaults
    to the usable cores; ``threads_per_worker`` (Numba threads per run) to 1 for the
    parallel backends and for ``serial`` to each run's default (the cores that other
    processes leave idle, followed while it runs).

    Finished runs are skipped, interrupted runs resumed from their checkpoints, failed
    runs retried. Raises :class:`UserInputError` for a bad sweep and :class:`SweepFailed`
    (after all other runs finished) if some runs failed.
    """
    if backend not in BACKENDS:
        raise UserInputError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if _in_a_workers_rerun_of_the_script():
        raise UserInputError(
            "simcore.sweep() was called again while a worker process re-ran the top level of "
            "your script (Python starts the processes and dask backends' workers that way on "
            "Linux, macOS and Windows). Call it under `if __name__ == \"__main__\":` (see "
            "docs/sweeps.md).")
    if scheduler is not None and backend != "dask":
        raise UserInputError("--scheduler only applies to --backend dask.")
    if workers is not None and workers < 1:
        raise UserInputError(f"--workers must be at least 1 (got {workers}).")
    if threads_per_worker is not None and threads_per_worker < 1:
        raise UserInputError(f"--threads-per-worker must be at least 1 (got {threads_per_worker}).")
    if backend == "dask":
        _require_dask()
        if scheduler in JOB_SCHEDULERS:
            _require_jobqueue()
        elif scheduler not in (None, "local") and "://" not in scheduler:
            raise UserInputError(
                f"--scheduler must be 'local', 'slurm', 'pbs' or a scheduler address such as "
                f"tcp://HOST:8786 (got {scheduler!r}).")
    plan = plan_sweep(spec, out=out)
    folder = plan.folder
    log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"The sweep output {folder} exists and is not a folder.")
    _check_same_sweep(plan)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"Cannot create the sweep folder {folder}: "
                             f"{exc.strerror or exc}.") from None
    with OutputLock(folder / ".simcore.lock", f"The sweep folder {folder}",
                    lambda msg: print(msg, file=sys.stderr)):
        return _run_locked(plan, backend, scheduler, workers, threads_per_worker, cluster,
                           log, argv)


def _run_locked(plan, backend, scheduler, workers, threads_per_worker, cluster, log,
                argv) -> Path:
    """The body of :func:`run_sweep`, run while holding the sweep folder's lock."""
    folder = plan.folder

    manifest = Manifest(plan)
    todo = []
    for run, entry in zip(plan.runs, manifest.entries):
        if _file_state(folder, run) == "done":
            entry["state"] = "done"
        else:
            todo.append(run)
    manifest.write()
    n_done = len(plan.runs) - len(todo)
    workers = workers or (1 if backend == "serial" else len(usable_cores()))
    if threads_per_worker is not None:
        threads = threads_per_worker
    elif backend == "serial":
        # each run's default: the cores other processes leave idle, at its start (a probe
        # reused for 30 s) and while it runs (simcore._cpu.LoadFollower)
        threads = None
    else:
        threads = 1
    log(f"sweep {folder}: {len(plan.runs)} runs ({n_done} already done, {len(todo)} to run) "
        f"on the {backend} backend" + (f" with {workers} workers" if backend != "serial" else ""))
    argv = list(sys.argv if argv is None else argv)
    tasks = {r.index: {"index": r.index, "run_parameters": r.run_parameters,
                       "out": str(folder / r.file), "threads": threads, "argv": argv}
             for r in todo}
    t_start = time.perf_counter()
    finished = [n_done]

    stop_signal = [None]

    def report(result: dict) -> None:
        i = result["index"]
        state = result["state"]
        if state == "interrupted":
            stop_signal[0] = stop_signal[0] or result.get("signum")
            manifest.set(i, state="pending", error="interrupted; resumes from its checkpoint",
                         wall_s=result["wall_s"])
            return
        manifest.set(i, state=state, error=result["error"], wall_s=result["wall_s"],
                     finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        finished[0] += 1
        run = plan.runs[i]
        where = ", ".join(f"{k}={v}" for k, v in run.point.items())
        msg = f"[{finished[0]}/{len(plan.runs)}] {state:6s} {run.file} ({where}, " \
              f"replica {run.coords['replica']}) {result['wall_s']:.1f} s"
        if state == "failed":
            msg += f": {result['error'].strip().splitlines()[-1]}"
        log(msg)

    interrupted = False
    try:
        if todo and backend == "serial":
            interrupted = _serial(tasks, manifest, report)
        elif todo and backend == "processes":
            interrupted = _processes(tasks, manifest, report, workers, threads)
        elif todo:
            interrupted = _dask(tasks, manifest, report, scheduler, workers, threads or 1,
                                cluster, folder, log)
    finally:
        manifest.flush()
    counts = manifest.counts()
    log(f"sweep {folder}: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['pending'] + counts['running']} not run, "
        f"in {time.perf_counter() - t_start:.1f} s")
    if interrupted:
        raise RunInterrupted(stop_signal[0] or signal.SIGINT,
                             "Sweep interrupted; each run under way was checkpointed where it "
                             "stopped (one stopped before its first frame had nothing to keep). "
                             "Run the same command again to resume.")
    failures = {e["file"]: e["error"] or "" for e in manifest.entries if e["state"] == "failed"}
    if failures:
        raise SweepFailed(folder, failures, len(plan.runs))
    return folder


def _check_same_sweep(plan: Plan) -> None:
    """Refuse to mix two different sweeps in one folder (never overwrite silently)."""
    path = plan.folder / MANIFEST
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        old_files = [e["file"] for e in old["runs"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserInputError(f"{path} exists but is not a readable sweep manifest; move it away "
                             "or choose another output folder.") from None
    if old_files != [r.file for r in plan.runs] or old.get("dims") != plan.dims:
        raise UserInputError(
            f"The folder {plan.folder} holds another sweep (its manifest lists other runs). "
            "Choose another output folder (`out` in the sweep file or --out); simcore never "
            "overwrites a sweep silently.")


def _serial(tasks, manifest, report) -> bool:
    for i, task in tasks.items():
        manifest.set(i, state="running", error=None)
        result = _run_task(task)
        report(result)
        if result["state"] == "interrupted":
            return True
    return False


def _processes(tasks, manifest, report, workers, threads) -> bool:
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(),
                                  initializer=_init_worker, initargs=(threads,))
    futures = {}
    stopped = []
    forward = _forward_sigterm(pool, stopped)
    try:
        for i, task in tasks.items():  # the pool's processes live for this sweep only
            futures[pool.submit(_run_task, dict(task, stop_on_interrupt=True))] = i
            manifest.entries[i].update(state="running", error=None)
        manifest.write()
        interrupted = False
        for fut in cf.as_completed(futures):
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OOM killer
                error = f"the worker process died: {exc!r}"
                if isinstance(exc, cf.process.BrokenProcessPool):
                    error += (" (it was killed, e.g. by the out-of-memory killer, or it could not "
                              "start: a script must call simcore.sweep under `if __name__ == "
                              "\"__main__\":`; see the workers' own messages above)")
                result = {"index": futures[fut], "state": "failed", "wall_s": 0.0,
                          "error": error}
                if stopped:  # a worker that SIGTERM reached before its run began
                    result.update(state="interrupted", signum=signal.SIGTERM)
            interrupted |= result["state"] == "interrupted"
            report(result)
        return interrupted
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        _unmark_running(manifest)
        raise
    finally:
        forward()
        pool.shutdown(wait=True, cancel_futures=True)


def _forward_sigterm(pool, stopped: list):
    """Pass a SIGTERM of this process (a batch system's wall-time signal sent to the
    sweep alone) on to the pool's workers, whose runs then checkpoint and stop; the
    signal is recorded in ``stopped``. Returns a function that restores the previous
    handler. A no-op outside the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        stopped.append(signum)
        for pid in list(getattr(pool, "_processes", None) or {}):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _unmark_running(manifest) -> None:
    for e in manifest.entries:
        if e["state"] == "running":
            e["state"] = "pending"
    manifest.write()


def _dask(tasks, manifest, report, scheduler, workers, threads, options, folder, log) -> bool:
    from distributed import as_completed

    client, cluster = _start_dask(scheduler, workers, threads, options, folder, log)
    try:
        futures = {}
        for i, task in tasks.items():
            fut = client.submit(_run_task, task, key=f"simcore-run-{i}-{task['out'][-19:-3]}",
                                pure=False, retries=0)
            futures[fut] = i
            manifest.entries[i].update(state="running", error=None)
        manifest.write()
        interrupted = False
        for fut in as_completed(list(futures)):
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker
                result = {"index": futures[fut], "state": "failed", "wall_s": 0.0,
                          "error": f"the dask worker failed: {exc!r}"}
            interrupted |= result["state"] == "interrupted"
            report(result)
        return interrupted
    except KeyboardInterrupt:
        _unmark_running(manifest)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
