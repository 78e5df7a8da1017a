"""Parameter sweeps: many runs of one model, fanned out serially, over processes or on dask.

A sweep file (TOML) names a model, a base preset and/or config, the parameters held fixed,
the parameters varied and how many seeds per point::

    model = "couzin"
    preset = "dynamic_parallel"      # optional base preset
    # config = "base.toml"           # optional base config, relative to this file
    out = "couzin_sweep"             # output folder, relative to this file (default: file stem)
    seed = 2024                      # root seed; per-run seeds come from SeedSequence.spawn
    seeds_per_point = 2              # replicas per parameter point (dimension ``replica``)
    steps = 600                      # run settings may sit at the top level or in [params]
    write_every = 20

    [params]                         # fixed overrides for every run
    n = 50

    [grid]                           # Cartesian product: one dimension per key
    r_o = [2.0, 5.0, 9.0]
    noise = [0.05, 0.2]

    [zip]                            # paired lists (equal lengths): one dimension, named
    r_a = [16.0, 19.0]               # after the first key, the others are coordinates on it
    speed = [3.0, 4.0]

    # [[points]]                     # or explicit points (dimension ``point``), instead of
    # r_o = 2.0                      # [grid] and [zip]
    # noise = 0.1

The runs are the product of the grid axes, the zip group and the replicas, in row-major
order (replica fastest). Run ``i`` gets the seed drawn from the ``i``-th child of
``numpy.random.SeedSequence(seed).spawn(n_runs)``; its file is ``run-<hash>.nc`` with
``<hash>`` the first 16 hex digits of the SHA-256 of its canonical ``run_parameters`` JSON
(stored in the file too). ``preset`` may itself be varied (a grid or zip key).

The output folder holds the run files and ``manifest.json`` (rewritten atomically as
runs start and finish, at most twice a second): the sweep, its dimensions and, per run,
its parameters, seed, file, state (``pending``, ``running`` — handed to a worker —,
``done``, ``failed``) and error text.
Running the same sweep again skips finished runs, resumes interrupted ones from their
checkpoints (``.part`` + ``.ckpt``) and retries failed ones.

Backends: ``serial`` (this process), ``processes`` (a ``concurrent.futures`` pool started
with ``forkserver`` where available, else ``spawn``), ``dask`` (``dask.distributed``: a
LocalCluster, an existing scheduler ``tcp://HOST:PORT``, or a SLURM/PBS cluster through
dask-jobqueue). Parallel workers run one Numba thread each unless told otherwise.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from simcore._cpu import idle_threads, usable_cores
from simcore._errors import UserInputError
from simcore._interrupt import RunInterrupted
from simcore.io.atomic import write_text
from simcore.io.lock import OutputLock

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
BACKENDS = ("serial", "processes", "dask")
JOB_SCHEDULERS = ("slurm", "pbs")
STATES = ("pending", "running", "done", "failed")
_TOP_KEYS = {"model", "preset", "config", "out", "seed", "seeds_per_point", "params", "grid",
             "zip", "points", "description"}
CLUSTER_HINT = "pip install 'simcore[cluster]'"


class SweepFailed(RuntimeError):
    """Some runs of a sweep failed (the others finished); ``failures`` maps file to error."""

    def __init__(self, folder: Path, failures: dict[str, str]):
        self.folder = Path(folder)
        self.failures = dict(failures)
        listed = "; ".join(f"{name}: {err.strip().splitlines()[-1] if err.strip() else '?'}"
                           for name, err in list(self.failures.items())[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        super().__init__(
            f"{len(self.failures)} run(s) of the sweep in {self.folder} failed: {listed}{more}. "
            f"The other runs finished. Errors are in {self.folder / MANIFEST}; fix the cause and "
            "run the same sweep again to retry only these runs."
        )


# ----------------------------------------------------------------------------- the plan


@dataclass
class Axis:
    """One sweep dimension: ``name``, its ``values``, and the parameters set along it."""

    name: str
    keys: list[str]          # parameters set by this axis (grid: [name]; zip: all zipped)
    values: list[tuple]      # one tuple of parameter values per index


@dataclass
class Run:
    """One run of a sweep."""

    index: int
    point: dict[str, Any]    # the varied parameters
    coords: dict[str, int]   # index along each dimension (replica included)
    seed: int
    file: str
    run_parameters: str      # canonical JSON (what the file's attribute will hold)


@dataclass
class Plan:
    """A validated sweep: its runs, dimensions and where they go."""

    spec: dict[str, Any]
    model: str
    folder: Path
    axes: list[Axis]
    replicas: int
    runs: list[Run] = field(default_factory=list)
    source: str | None = None

    @property
    def dims(self) -> list[str]:
        """Dimension names of the combined dataset (sweep axes, then ``replica``)."""
        return [a.name for a in self.axes] + ["replica"]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes) + (self.replicas,)


def _where(source) -> str:
    return f"In the sweep file {source}" if source else "In the sweep"


def _scalar(value, what, source):
    if isinstance(value, (bool, int, float, str)):
        return value
    raise UserInputError(
        f"{_where(source)}, {what} must be a number, a string or a boolean (got {value!r})."
    )


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a sweep TOML file into a dict (``UserInputError`` if unreadable)."""
    from simcore.config import load_toml

    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"{path} is a folder; give the sweep file (SWEEP.toml).")
    return load_toml(path, "sweep file")


def _axes(spec, source) -> list[Axis]:
    grid, zipped, points = spec.get("grid", {}), spec.get("zip", {}), spec.get("points")
    for name, table in (("grid", grid), ("zip", zipped)):
        if not isinstance(table, dict):
            raise UserInputError(f"{_where(source)}, '{name}' must be a table ([{name}]) of "
                                 "parameter = [values] lines.")
    axes: list[Axis] = []
    if points is not None:
        if grid or zipped:
            raise UserInputError(f"{_where(source)}, give either [[points]] or [grid]/[zip], "
                                 "not both.")
        if not isinstance(points, list) or not points or not all(isinstance(p, dict)
                                                                 for p in points):
            raise UserInputError(f"{_where(source)}, 'points' must be a non-empty array of "
                                 "tables ([[points]] blocks).")
        keys = list(points[0])
        if not keys:
            raise UserInputError(f"{_where(source)}, the first [[points]] block is empty.")
        for k, p in enumerate(points):
            if sorted(p) != sorted(keys):
                raise UserInputError(
                    f"{_where(source)}, every [[points]] block must set the same parameters "
                    f"({', '.join(keys)}); block {k + 1} sets {', '.join(p) or 'nothing'}.")
        values = [tuple(_scalar(p[key], f"points.{key}", source) for key in keys)
                  for p in points]
        if len(set(values)) != len(values):
            raise UserInputError(f"{_where(source)}, two [[points]] blocks are identical; use "
                                 "seeds_per_point for replicas.")
        axes.append(Axis("point", keys, values))
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserInputError(f"{_where(source)}, grid.{key} must be a non-empty list of "
                                 f"values (got {values!r}).")
        values = [_scalar(v, f"grid.{key}", source) for v in values]
        if len(set(values)) != len(values):
            raise UserInputError(f"{_where(source)}, grid.{key} repeats a value ({values}); "
                                 "use seeds_per_point for replicas.")
        axes.append(Axis(key, [key], [(v,) for v in values]))
    if zipped:
        lengths = {}
        for key, values in zipped.items():
            if not isinstance(values, list) or not values:
                raise UserInputError(f"{_where(source)}, zip.{key} must be a non-empty list of "
                                     f"values (got {values!r}).")
            lengths[key] = len(values)
        if len(set(lengths.values())) != 1:
            raise UserInputError(
                f"{_where(source)}, the [zip] lists must have equal lengths (got "
                + ", ".join(f"{k}: {n}" for k, n in lengths.items()) + ").")
        keys = list(zipped)
        values = [tuple(_scalar(v, f"zip.{k}", source) for k, v in zip(keys, row))
                  for row in zip(*(zipped[k] for k in keys))]
        if len({v[0] for v in values}) != len(values):
            raise UserInputError(f"{_where(source)}, zip.{keys[0]} names the dimension and must "
                                 "not repeat a value.")
        axes.append(Axis(keys[0], keys, values))
    if not axes:
        raise UserInputError(f"{_where(source)}, nothing is varied: add a [grid], [zip] or "
                             "[[points]] section (a single run is `simcore run`).")
    return axes


def derive_seeds(root: int, n: int) -> list[int]:
    """Per-run seeds: the first 63 bits of each child of ``SeedSequence(root).spawn(n)``."""
    children = np.random.SeedSequence(int(root)).spawn(n)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children]


def run_file_name(run_json: str) -> str:
    """``run-<16 hex digits of SHA-256(run_parameters)>.nc``."""
    return f"run-{hashlib.sha256(run_json.encode()).hexdigest()[:16]}.nc"


def plan_sweep(spec: Mapping[str, Any] | str | Path, *, out: str | Path | None = None) -> Plan:
    """Validate a sweep (a TOML path or the same content as a dict) and list its runs.

    Every run's parameters are validated up front; all problems are reported together as
    one :class:`UserInputError`. ``out`` overrides the sweep's output folder.
    """
    from simcore.config import RUN_KEYS, resolve, run_parameters_json
    from simcore.models import model_names

    source = None
    base_dir = Path.cwd()
    if isinstance(spec, (str, Path)):
        source = str(spec)
        base_dir = Path(spec).resolve().parent
        spec = load_spec(spec)
    spec = dict(spec)
    unknown = sorted(set(spec) - _TOP_KEYS - RUN_KEYS)
    if unknown:
        raise UserInputError(
            f"{_where(source)}, unknown key(s) {', '.join(unknown)}. Valid top-level keys are "
            f"{', '.join(sorted(_TOP_KEYS))} and the run settings "
            f"{', '.join(sorted(RUN_KEYS - {'seed'}))}; model parameters go in [params].")
    model = spec.get("model")
    if model not in model_names():
        raise UserInputError(f"{_where(source)}, model must be one of {', '.join(model_names())} "
                             f"(got {model!r}).")
    root = spec.get("seed", 0)
    if not isinstance(root, int) or isinstance(root, bool) or root < 0:
        raise UserInputError(f"{_where(source)}, seed (the root seed) must be an integer >= 0 "
                             f"(got {root!r}).")
    replicas = spec.get("seeds_per_point", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise UserInputError(f"{_where(source)}, seeds_per_point must be an integer >= 1 (got "
                             f"{replicas!r}).")
    fixed = spec.get("params", {})
    if not isinstance(fixed, dict):
        raise UserInputError(f"{_where(source)}, 'params' must be a table ([params]).")
    fixed = dict(fixed)
    for key in sorted(RUN_KEYS - {"seed"}):
        if key in spec:
            if key in fixed:
                raise UserInputError(f"{_where(source)}, {key} is given both at the top level "
                                     "and in [params].")
            fixed[key] = spec[key]
    if "seed" in fixed or "model" in fixed or "preset" in fixed:
        bad = next(k for k in ("seed", "model", "preset") if k in fixed)
        raise UserInputError(
            f"{_where(source)}, '{bad}' cannot be set in [params]: "
            + ("per-run seeds are derived from the top-level root seed." if bad == "seed"
               else "set it at the top level (or vary it in [grid]/[zip])."))
    axes = _axes(spec, source)
    varied = [k for a in axes for k in a.keys]
    for key in varied:
        if key in ("seed", "model"):
            raise UserInputError(f"{_where(source)}, '{key}' cannot be varied"
                                 + (": use seeds_per_point for replicas." if key == "seed"
                                    else "; write one sweep per model."))
        if key == "replica":
            raise UserInputError(f"{_where(source)}, 'replica' is reserved for the seeds "
                                 "dimension.")
    dup = sorted({k for k in varied if varied.count(k) > 1} | (set(varied) & set(fixed)))
    if dup:
        raise UserInputError(f"{_where(source)}, {', '.join(dup)} is both varied and fixed (or "
                             "varied twice); give each parameter once.")
    for key in ("config", "out", "preset"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise UserInputError(f"{_where(source)}, {key} must be a string (got "
                                 f"{spec[key]!r}).")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise UserInputError(f"The sweep's output folder must be a path (got {out!r}).")
    config = spec.get("config")
    if config is not None:
        config = Path(config)
        if not config.is_absolute():
            config = base_dir / config
        if not config.exists():
            raise UserInputError(f"{_where(source)}, the base config {config} does not exist.")
    if out is None:
        out = spec.get("out")
        if out is None:
            out = (Path(source).stem if source else "sweep")
        out = Path(out)
        if not out.is_absolute():
            out = base_dir / out
    folder = Path(out).resolve()

    plan = Plan(spec={k: v for k, v in spec.items()}, model=model, folder=folder, axes=axes,
                replicas=replicas, source=source)
    plan.spec["config"] = str(config) if config is not None else None
    plan.spec["out"] = str(folder)
    combos = list(itertools.product(*(range(len(a.values)) for a in axes), range(replicas)))
    seeds = derive_seeds(root, len(combos))
    problems, names = [], {}
    for i, (combo, seed) in enumerate(zip(combos, seeds)):
        point: dict[str, Any] = {}
        for axis, j in zip(axes, combo[:-1]):
            point.update(zip(axis.keys, axis.values[j]))
        preset = point.get("preset", spec.get("preset"))
        overrides = {**fixed, **{k: v for k, v in point.items() if k != "preset"}}
        try:
            params, settings, preset = resolve(model, preset=preset, config=config,
                                               overrides=overrides, seed=seed)
        except UserInputError as err:
            where = ", ".join(f"{k}={v}" for k, v in point.items())
            problems.append(f"at {where}: {err}")
            if len(problems) >= 3:
                break
            continue
        run_json = run_parameters_json(model, params, settings, preset)
        name = run_file_name(run_json)
        if name in names:  # pragma: no cover - a SHA-256 prefix collision
            raise UserInputError(f"Runs {names[name]} and {i} of the sweep map to the same file.")
        names[name] = i
        coords = {a.name: j for a, j in zip(axes, combo[:-1])}
        coords["replica"] = combo[-1]
        plan.runs.append(Run(i, point, coords, seed, name, run_json))
    if problems:
        raise UserInputError(f"{_where(source)}, some runs have invalid parameters: "
                             + " ".join(problems))
    return plan


# ----------------------------------------------------------------------------- manifest


class Manifest:
    """The JSON record of a sweep folder: the sweep, its dimensions and every run's state."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.path = plan.folder / MANIFEST
        self.entries = [
            {"index": r.index, "file": r.file, "point": r.point, "coords": r.coords,
             "seed": r.seed, "state": "pending", "error": None, "wall_s": None,
             "finished": None}
            for r in plan.runs
        ]

    def record(self) -> dict:
        axes = [{"name": a.name, "keys": a.keys, "values": [list(v) for v in a.values]}
                for a in self.plan.axes]
        return {"simcore_sweep": MANIFEST_VERSION, "model": self.plan.model,
                "dims": self.plan.dims, "shape": list(self.plan.shape), "axes": axes,
                "sweep": self.plan.spec, "runs": self.entries}

    #: at most one rewrite per this many seconds while runs finish (a sweep of 10^4 runs
    #: would otherwise rewrite a multi-MB file 10^4 times); states are re-derived from the
    #: run files on the next start, so a manifest that lags by a second loses nothing
    min_interval = 0.5

    def write(self) -> None:
        write_text(self.path, json.dumps(self.record(), indent=1, default=str) + "\n",
                   durable=True)
        self._written = time.monotonic()
        self._dirty = False

    def set(self, index: int, **values) -> None:
        """Update one run's entry; rewrite the file unless it was rewritten very recently."""
        self.entries[index].update(values)
        self._dirty = True
        if time.monotonic() - getattr(self, "_written", -1e9) >= self.min_interval:
            self.write()

    def flush(self) -> None:
        """Rewrite the file if some change is not in it yet."""
        if getattr(self, "_dirty", False):
            self.write()

    def counts(self) -> dict[str, int]:
        return {s: sum(e["state"] == s for e in self.entries) for s in STATES}


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a sweep folder as a dict (``UserInputError`` if there is none)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise UserInputError(f"The sweep folder {folder} does not exist.")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"{folder} is not a sweep folder (no {MANIFEST}); run "
                             "`simcore sweep SWEEP.toml` first.") from None
    except (OSError, ValueError) as exc:
        raise UserInputError(f"Cannot read {path}: {exc}.") from None
    if not isinstance(record, dict) or record.get("simcore_sweep") != MANIFEST_VERSION:
        raise UserInputError(f"{path} is not a simcore sweep manifest (version "
                             f"{MANIFEST_VERSION}).")
    return record


def _file_state(folder: Path, run: Run) -> str:
    """'done' if the run's file is complete with the right parameters, else 'pending'."""
    from simcore.io.trajectory import read_attrs

    path = folder / run.file
    if not path.exists():
        return "pending"
    try:
        attrs = read_attrs(path)
    except UserInputError:
        return "pending"
    return "done" if attrs.get("run_parameters") == run.run_parameters else "pending"


# ----------------------------------------------------------------------------- running


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


def _init_worker(threads: int | None) -> None:  # pragma: no cover - runs in the workers
    if threads is not None:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _require_dask():
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise UserInputError(
            "The dask backend needs dask.distributed, which is not installed. Install the "
            f"optional extra with: {CLUSTER_HINT}."
        ) from None


def _require_jobqueue():
    _require_dask()
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        raise UserInputError(
            "Running a sweep on SLURM or PBS needs dask-jobqueue, which is not installed. "
            f"Install the optional extra with: {CLUSTER_HINT}."
        ) from None


@dataclass
class ClusterOptions:
    """Batch-job settings for ``--scheduler slurm|pbs`` (None: dask-jobqueue's config)."""

    cores: int | None = None       # cores per job (one single-threaded worker per core)
    memory: str | None = None      # memory per job, e.g. "8GB"
    walltime: str | None = None    # e.g. "02:00:00"
    queue: str | None = None       # partition (SLURM) or queue (PBS)
    account: str | None = None     # account / project to charge
    jobs: int = 1                  # number of batch jobs to start


def job_script(scheduler: str, options: ClusterOptions | None = None, *,
               threads_per_worker: int = 1,
               scheduler_address: str = "tcp://SCHEDULER-ADDRESS:8786") -> str:
    """The batch script that ``--scheduler slurm|pbs`` submits for each job.

    Generated by dask-jobqueue without contacting (or needing) SLURM/PBS; the real
    script carries the address of the scheduler started by ``simcore sweep``.
    """
    _require_jobqueue()
    from dask_jobqueue.pbs import PBSJob
    from dask_jobqueue.slurm import SLURMJob

    options = options or ClusterOptions()
    kwargs = _jobqueue_kwargs(options, threads_per_worker)
    cls = {"slurm": SLURMJob, "pbs": PBSJob}[scheduler]
    try:
        job = cls(scheduler=scheduler_address, name="simcore-worker", **kwargs)
    except ValueError as exc:
        raise UserInputError(_jobqueue_error(scheduler, exc)) from None
    return job.job_script()


def _jobqueue_error(scheduler: str, exc: Exception) -> str:
    if "cores and memory" in str(exc):
        return (f"{scheduler.upper()} jobs need the cores and the memory per job: pass --cores "
                "and --memory (e.g. --cores 8 --memory 16GB), or set them in dask-jobqueue's "
                "configuration file (~/.config/dask/jobqueue.yaml).")
    return f"Cannot set up the {scheduler.upper()} jobs: {exc}."


def _jobqueue_kwargs(options: ClusterOptions, threads_per_worker: int) -> dict:
    kwargs: dict[str, Any] = {}
    for key in ("cores", "memory", "walltime", "queue", "account"):
        value = getattr(options, key)
        if value is not None:
            kwargs[key] = value
    if options.cores is not None:
        kwargs["processes"] = max(1, options.cores // max(1, threads_per_worker))
    kwargs["job_name"] = "simcore-sweep"
    kwargs["job_script_prologue"] = [
        f"export NUMBA_NUM_THREADS={threads_per_worker} OMP_NUM_THREADS={threads_per_worker}"]
    return kwargs


def _start_dask(scheduler: str | None, workers: int, threads: int,
                options: ClusterOptions | None, folder: Path, log):
    """A ``(client, cluster)`` pair; ``cluster`` is None for an external scheduler."""
    _require_dask()
    import logging

    from distributed import Client, LocalCluster

    if scheduler in (None, "local"):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR,
                               env={"NUMBA_NUM_THREADS": str(threads),
                                    "OMP_NUM_THREADS": str(threads)})
        log(f"dask LocalCluster with {workers} worker process(es)")
        return Client(cluster), cluster
    if scheduler in JOB_SCHEDULERS:
        _require_jobqueue()
        from dask_jobqueue import PBSCluster, SLURMCluster

        options = options or ClusterOptions()
        cls = {"slurm": SLURMCluster, "pbs": PBSCluster}[scheduler]
        try:
            cluster = cls(name="simcore-sweep", dashboard_address=None,
                          log_directory=str(folder / "dask-logs"),
                          **_jobqueue_kwargs(options, threads))
        except ValueError as exc:
            raise UserInputError(_jobqueue_error(scheduler, exc)) from None
        cluster.scale(jobs=options.jobs)
        log(f"submitted {options.jobs} {scheduler.upper()} job(s); waiting for workers")
        return Client(cluster), cluster
    if "://" not in scheduler:
        raise UserInputError(
            f"--scheduler must be 'local', 'slurm', 'pbs' or a scheduler address such as "
            f"tcp://HOST:8786 (got {scheduler!r}).")
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise UserInputError(f"Cannot reach the dask scheduler at {scheduler}: {exc}.") from None
    log(f"connected to the dask scheduler at {scheduler}")
    return client, None


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
    parallel backends and for ``serial`` to the cores that other processes leave idle.

    Finished runs are skipped, interrupted runs resumed from their checkpoints, failed
    runs retried. Raises :class:`UserInputError` for a bad sweep and :class:`SweepFailed`
    (after all other runs finished) if some runs failed.
    """
    if backend not in BACKENDS:
        raise UserInputError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
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
    elif backend == "serial":  # the idle cores, probed once for the whole sweep
        import numba

        threads = idle_threads(numba.config.NUMBA_NUM_THREADS)[0]
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
                             "Sweep interrupted; the interrupted run was checkpointed. Run the "
                             "same command again to resume.")
    failures = {e["file"]: e["error"] or "" for e in manifest.entries if e["state"] == "failed"}
    if failures:
        raise SweepFailed(folder, failures)
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
                result = {"index": futures[fut], "state": "failed", "wall_s": 0.0,
                          "error": f"the worker process died: {exc!r}"}
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


# ----------------------------------------------------------------------------- combining


def _manifest_layout(record: dict):
    dims = record["dims"]
    shape = tuple(record["shape"])
    coords = {}
    for axis in record["axes"]:
        name, keys = axis["name"], axis["keys"]
        values = axis["values"]
        if name == "point":
            coords["point"] = ("point", np.arange(len(values)))
            for k, key in enumerate(keys):
                coords[key] = ("point", np.array([v[k] for v in values]))
        else:
            for k, key in enumerate(keys):
                coords[key] = (name, np.array([v[k] for v in values]))
    coords["replica"] = ("replica", np.arange(shape[-1]))
    return dims, shape, coords


def _nested(items: list, shape: tuple[int, ...]):
    if len(shape) == 1:
        return list(items)
    step = len(items) // shape[0]
    return [_nested(items[k * step:(k + 1) * step], shape[1:]) for k in range(shape[0])]


def _done_files(folder: Path, record: dict) -> list[Path]:
    runs = record["runs"]
    missing = [e for e in runs if e["state"] != "done" or not (folder / e["file"]).exists()]
    if missing:
        states = ", ".join(f"{s}: {sum(e['state'] == s for e in missing)}" for s in STATES
                           if any(e["state"] == s for e in missing))
        raise UserInputError(
            f"{len(missing)} of the {len(runs)} runs of the sweep in {folder} are not finished "
            f"({states}); run the sweep again (it resumes) before combining it.")
    return [folder / e["file"] for e in runs]


def _seed_coords(record: dict, dims, shape) -> dict:
    seeds = np.array([e["seed"] for e in record["runs"]], dtype=np.uint64).reshape(shape)
    files = np.array([e["file"] for e in record["runs"]], dtype=object).reshape(shape)
    return {"seed": (dims, seeds.astype(np.int64)), "run_file": (dims, files)}


def open_sweep(folder: str | Path, **kwargs):
    """Open a finished sweep lazily as one :class:`xarray.Dataset`.

    The varied parameters are dimensions (a ``[zip]`` group is one dimension named after
    its first parameter, the others are coordinates on it; ``[[points]]`` give a ``point``
    dimension), followed by ``replica``; per-run ``seed`` and ``run_file`` are
    coordinates. When every run has the same frame times, ``time`` is the frame dimension
    as in :func:`simcore.open_trajectory`; otherwise the dimension stays ``frame`` and
    ``time`` is a coordinate over the sweep dimensions. Runs with different numbers of
    atoms or frames are padded with NaN. Data are dask arrays (``open_mfdataset``);
    ``kwargs`` go to :func:`xarray.open_mfdataset`.
    """
    import netCDF4
    import xarray as xr

    folder = Path(folder)
    record = read_manifest(folder)
    dims, shape, coords = _manifest_layout(record)
    files = _done_files(folder, record)
    times, sizes = [], []
    for path in files:
        with netCDF4.Dataset(path) as nc:
            times.append(np.asarray(nc["time"][:]))
            sizes.append((nc.dimensions["frame"].size, nc.dimensions["atom"].size))
    same_time = all(t.shape == times[0].shape and np.array_equal(t, times[0]) for t in times)
    ragged = len(set(sizes)) > 1

    from simcore.io.trajectory import STATE_PREFIX

    def prep(ds):
        ds = ds.drop_vars([v for v in ("spatial", "cell_spatial", "cell_angular")
                           if v in ds.variables and v not in ds.dims], errors="ignore")
        # each run's stored final state (for --extend) is no data to combine
        ds = ds.drop_vars([v for v in ds.variables if str(v).startswith(STATE_PREFIX)])
        if ragged:
            ds = ds.assign_coords(atom=np.arange(ds.sizes["atom"]))
            if not same_time:
                ds = ds.assign_coords(frame=np.arange(ds.sizes["frame"]))
        if same_time:
            ds = ds.set_coords("time").swap_dims(frame="time")
        elif "time" in ds.coords:  # files name time a coordinate; per-run times are data
            ds = ds.reset_coords("time")
        return ds

    options = dict(combine="nested", concat_dim=dims, data_vars="all", coords="minimal",
                   compat="override", join="outer", combine_attrs="drop_conflicts",
                   preprocess=prep, chunks={}, parallel=False)
    options.update(kwargs)
    import simcore.accessor  # noqa: F401

    ds = xr.open_mfdataset(_nested([str(f) for f in files], shape), **options)
    if not same_time:
        ds = ds.set_coords("time")
    ds = ds.transpose(*dims, ...)
    ds = ds.assign_coords({**coords, **_seed_coords(record, dims, shape)})
    for key in ("run_parameters", "provenance"):
        ds.attrs.pop(key, None)
    ds.attrs["simcore_model"] = record["model"]
    ds.attrs["simcore_sweep"] = json.dumps(record["sweep"], sort_keys=True, default=str)
    ds.attrs["simcore_sweep_dims"] = " ".join(dims)
    return ds


def is_sweep_folder(path: str | Path) -> bool:
    """True if ``path`` is a folder with a sweep manifest."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST).exists()


def analyze_sweep(folder: str | Path, *, quiet: bool = True, **kwargs):
    """The model's diagnostics of every run of a finished sweep, combined in one Dataset.

    Each run is analysed like ``simcore analyze RUN.nc`` (``kwargs`` go to
    :func:`simcore.analysis.analyze_dataset`); the results are stacked along the sweep
    dimensions (sweep parameters, then ``replica``) with ``seed`` and ``run_file``
    coordinates. Diagnostics of different lengths are padded with NaN.
    """
    import xarray as xr

    from simcore.analysis import analyze_dataset
    from simcore.io.trajectory import open_trajectory

    folder = Path(folder)
    record = read_manifest(folder)
    dims, shape, coords = _manifest_layout(record)
    files = _done_files(folder, record)
    results = []
    for k, path in enumerate(files):
        with open_trajectory(path) as ds:
            results.append(analyze_dataset(ds, **kwargs).load())
        if not quiet:
            print(f"[{k + 1}/{len(files)}] analysed {path.name}", file=sys.stderr, flush=True)
    combined = xr.combine_nested(_nested(results, shape), concat_dim=dims, data_vars="all",
                                 coords="different", compat="equals", join="outer",
                                 combine_attrs="drop_conflicts")
    combined = combined.transpose(*dims, ...)
    combined = combined.assign_coords({**coords, **_seed_coords(record, dims, shape)})
    combined.attrs["simcore_model"] = record["model"]
    combined.attrs["simcore_sweep"] = json.dumps(record["sweep"], sort_keys=True, default=str)
    combined.attrs["simcore_sweep_dims"] = " ".join(dims)
    return combined


def describe(plan: Plan) -> str:
    """A table of the runs of a plan and their current state (for ``--dry-run``)."""
    lines = [f"model {plan.model}; dimensions " + ", ".join(
        f"{d} ({n})" for d, n in zip(plan.dims, plan.shape)) + f"; {len(plan.runs)} runs; "
        f"output {plan.folder}"]
    for run in plan.runs:
        state = _file_state(plan.folder, run) if plan.folder.exists() else "pending"
        where = ", ".join(f"{k}={v}" for k, v in run.point.items())
        lines.append(f"  {run.index:4d}  {state:7s} {run.file}  {where}, replica "
                     f"{run.coords['replica']}, seed {run.seed}")
    return "\n".join(lines)


__all__ = ["run_sweep", "open_sweep", "analyze_sweep", "plan_sweep", "job_script",
           "ClusterOptions", "SweepFailed", "derive_seeds", "read_manifest", "is_sweep_folder"]
