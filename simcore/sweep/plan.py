"""The plan of a sweep: its axes, runs, seeds and file names, from a sweep file."""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from simcore._errors import UserInputError
from simcore.sweep._common import _TOP_KEYS
from simcore.sweep.manifest import _file_state


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


#: the most runs a sweep may have: its plan validates and lists every run up front (~1 ms
#: and a few kB each), and each run is a file in the sweep's folder
MAX_RUNS = 100_000


def run_file_name(run_json: str) -> str:
    """``run-<16 hex digits of SHA-256(run_parameters)>.nc``."""
    return f"run-{hashlib.sha256(run_json.encode()).hexdigest()[:16]}.nc"


def plan_sweep(spec: Mapping[str, Any] | str | Path, *, out: str | Path | None = None) -> Plan:
    """Validate a sweep (a TOML path or the same content as a dict) and list its runs.

    Every run's parameters are validated up front; all problems are reported together as
    one :class:`UserInputError`. ``out`` overrides the sweep's output folder.
    """
    from simcore.config import RUN_KEYS, resolve, run_parameters_json
    from simcore.models import engine_names

    source = None
    base_dir = Path.cwd()
    if isinstance(spec, (str, os.PathLike)):
        source = str(spec)
        base_dir = Path(spec).resolve().parent
        spec = load_spec(spec)
    if not isinstance(spec, Mapping):
        raise UserInputError(f"A sweep is the path of its TOML file or a dict of the same keys "
                             f"(got {spec!r}).")
    spec = dict(spec)
    unknown = sorted(set(spec) - _TOP_KEYS - RUN_KEYS)
    if unknown:
        raise UserInputError(
            f"{_where(source)}, unknown key(s) {', '.join(unknown)}. Valid top-level keys are "
            f"{', '.join(sorted(_TOP_KEYS))} and the run settings "
            f"{', '.join(sorted(RUN_KEYS - {'seed'}))}; model parameters go in [params].")
    model = spec.get("model")
    if model not in engine_names():
        raise UserInputError(f"{_where(source)}, model must be one of {', '.join(engine_names())} "
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
        if spec.get(key) is not None and not spec[key].strip():  # "" is the sweep file's folder
            raise UserInputError(f"{_where(source)}, {key} is empty; give a name or omit the "
                                 "key" + (" (the default folder is named after the sweep "
                                          "file)." if key == "out" else "."))
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

    n_runs = math.prod(len(a.values) for a in axes) * replicas
    if n_runs > MAX_RUNS:
        raise UserInputError(
            f"{_where(source)}, the sweep has {n_runs:,} runs "
            f"({' x '.join(str(len(a.values)) for a in axes)} points x {replicas:,} "
            f"seeds_per_point); a sweep holds at most {MAX_RUNS:,} (each "
            "is validated and listed up front, and is a file in one folder). Split it into "
            "several sweeps.")
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
