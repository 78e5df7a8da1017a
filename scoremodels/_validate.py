"""Validation of scoremodels settings and run directories (bad input is a UserInputError).

* :func:`check_train_config` — strict types and finite, sensible ranges for every field
  of :class:`scoremodels.train.TrainConfig` (``--lr nan``, ``steps = true`` ... refused);
* :func:`check_epr_options` — the same for the options of ``scoremodels epr``;
* :func:`read_run_record` — ``run.json`` of a run directory, checked, with one paragraph
  naming what is damaged instead of a JSONDecodeError or KeyError;
* :func:`restore_failed` — the message for an orbax checkpoint that cannot be restored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from simcore._errors import UserInputError

# field: (kind, lower, upper, optional); kinds: int, float, bool, str, floats (list)
_INF = math.inf
TRAIN_FIELDS: dict[str, tuple] = {
    "size": ("str", ("tiny", "small", "anchor", "mlp", "pinned", "auto"), None, False),
    "depth": ("int", 1, 1024, True),
    "width": ("int", 1, 1 << 16, True),
    "heads": ("int", 1, 1024, True),
    "neighbours": ("int", 1, 1 << 16, True),
    "cutoff": ("float", 0.0, _INF, True),
    "absolute_position": ("bool", None, None, True),
    "sector": ("str", ("full", "propulsion", "auto"), None, False),
    "objective": ("str", ("dsm", "dsm_g", "hyvarinen", "flow", "auto"), None, False),
    "flow_step": ("int", 1, None, False),
    "flow_scheme": ("str", ("central", "backward"), None, False),
    "sigmas": ("floats", 0.0, _INF, False),
    "div_mode": ("str", ("exact", "hutchinson"), None, False),
    "fpe_weight": ("float", 0.0, _INF, False),
    "rotate": ("bool", None, None, False),
    "augment": ("str", ("none", "square"), None, False),
    "optimizer": ("str", ("adamw", "radam"), None, False),
    "lr": ("float", 0.0, _INF, False),
    "warmup": ("int", 0, None, False),
    "weight_decay": ("float", 0.0, _INF, False),
    "clip": ("float", 0.0, _INF, False),
    "ema": ("float", 0.0, 1.0, False),
    "steps": ("int", 1, None, False),
    "batch_size": ("int", 1, None, False),
    "particles_per_frame": ("int", 1, None, True),
    "burn_in": ("float", 0.0, 1.0, False),
    "val_fraction": ("float", 0.0, 1.0, False),
    "n_blocks": ("int", 1, None, False),
    "stride": ("int", 1, None, False),
    "val_samples": ("int", 1, None, False),
    "val_every": ("int", 1, None, False),
    "checkpoint_every": ("int", 1, None, False),
    "memory_budget_mb": ("float", 0.0, _INF, False),
    "seed": ("int", 0, 2 ** 63 - 1, False),
}
# strict lower bound (value must exceed it) for these; the others include their bounds
# lr = 0 is allowed: it evaluates the network's initialisation (e.g. the pinned network's
# linear-response score) through the whole training and inference path
_EXCLUSIVE_LOW = {"cutoff", "sigmas", "clip", "memory_budget_mb"}
_EXCLUSIVE_HIGH = {"burn_in", "val_fraction"}


def _problem(name: str, value: Any, spec: tuple) -> str | None:
    kind, low, high, optional = spec
    if value is None:
        return None if optional else f"{name} must be given (got None)"
    if kind == "str":
        if not isinstance(value, str) or value not in low:
            return f"{name} must be one of {', '.join(low)} (got {value!r})"
        return None
    if kind == "bool":
        return None if isinstance(value, bool) else f"{name} must be true or false (got {value!r})"
    if kind == "floats":
        if not isinstance(value, (list, tuple)) or not value:
            return f"{name} must be a non-empty list of numbers (got {value!r})"
        for v in value:
            bad = _problem(name, v, ("float", low, high, False))
            if bad:
                return bad
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (kind == "int" and not isinstance(value, int)):
        what = "a whole number" if kind == "int" else "a number"
        return f"{name} must be {what} (got {value!r})"
    if kind == "float" and not math.isfinite(value):
        return f"{name} must be a finite number (got {value!r})"
    exclusive_low = name in _EXCLUSIVE_LOW
    if low is not None and (value < low or (exclusive_low and value == low)):
        return f"{name} must be {'>' if exclusive_low else '>='} {low:g} (got {value!r})"
    exclusive_high = name in _EXCLUSIVE_HIGH
    if high is not None and (value > high or (exclusive_high and value == high)):
        return f"{name} must be {'<' if exclusive_high else '<='} {high:g} (got {value!r})"
    return None


def check_train_config(cfg) -> None:
    """Raise :class:`UserInputError` listing every field of ``cfg`` (a TrainConfig) with a
    wrong type (a bool or float for an int, a string for a number), a NaN or infinity, or a
    value out of range. Fields unknown to this table are only checked to be finite."""
    import dataclasses

    problems = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        spec = TRAIN_FIELDS.get(f.name)
        if spec is None:
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{f.name} must be a finite number (got {value!r})")
            continue
        bad = _problem(f.name, value, spec)
        if bad:
            problems.append(bad)
    if getattr(cfg, "rotate", False) is True and getattr(cfg, "augment", "none") != "none":
        problems.append("rotate (any angle) and augment (the square's symmetries) are "
                        "alternatives; choose one")
    if problems:
        raise UserInputError("Bad training settings: " + "; ".join(problems)
                             + ". Fix them in the flags or the [train] table of --config.")


def check_epr_options(*, burn_in, stride, max_frames, batch_particles, memory_budget_mb,
                      grid) -> None:
    """Raise :class:`UserInputError` for a wrong-typed, non-finite or out-of-range option
    of ``scoremodels epr``."""
    specs = {"burn_in": (burn_in, ("float", 0.0, 1.0, False)),
             "stride": (stride, ("int", 1, None, False)),
             "max_frames": (max_frames, ("int", 1, None, True)),
             "batch_particles": (batch_particles, ("int", 1, None, False)),
             "memory_budget_mb": (memory_budget_mb, ("float", 0.0, _INF, False)),
             "grid": (grid, ("int", 1, 1 << 14, False))}
    problems = [p for name, (value, spec) in specs.items()
                if (p := _problem(name, value, spec))]
    if problems:
        raise UserInputError("Bad options for scoremodels epr: " + "; ".join(problems) + ".")


_RUN_KEYS = ("train", "net", "objective", "adapter", "sector", "score_dims", "trajectories")


def read_run_record(run_dir: str | Path, run_file: str = "run.json") -> dict:
    """The checked ``run.json`` record of a training run directory.

    A missing folder or file, text that is not JSON, missing keys or a ``train`` table that
    fails :func:`check_train_config` raise :class:`UserInputError` saying what is damaged
    and what to do (start over with --overwrite).
    """
    run_dir = Path(run_dir)
    path = run_dir / run_file
    if not path.exists():
        raise UserInputError(f"{run_dir} is not a scoremodels run directory (no {run_file}).")
    fix = (f" The run directory is damaged or was edited; train it again with "
           f"`scoremodels train ... --out {run_dir} --overwrite`.")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserInputError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path} is not valid JSON ({exc})." + fix) from None
    if not isinstance(record, dict):
        raise UserInputError(f"{path} does not hold a JSON object." + fix)
    missing = [k for k in _RUN_KEYS if k not in record]
    if missing:
        raise UserInputError(f"{path} lacks {', '.join(missing)}." + fix)
    for key in ("train", "net", "objective", "adapter"):
        if not isinstance(record[key], dict):
            raise UserInputError(f"In {path}, '{key}' is not a JSON object." + fix)
    if not isinstance(record["trajectories"], list) or not all(
            isinstance(p, str) for p in record["trajectories"]):
        raise UserInputError(f"In {path}, 'trajectories' is not a list of file names." + fix)
    if not isinstance(record["score_dims"], list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in record["score_dims"]):
        raise UserInputError(f"In {path}, 'score_dims' is not a list of integers." + fix)
    ckpt = run_dir / "checkpoints"
    if ckpt.exists() and not ckpt.is_dir():
        raise UserInputError(f"{ckpt} is a file, not the folder of orbax checkpoints." + fix)
    return record


def restore_failed(run_dir: str | Path, step, exc: Exception) -> UserInputError:
    """The error for an orbax checkpoint of ``run_dir`` at ``step`` that cannot be restored
    (missing or truncated files, other shapes than run.json describes)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(reason) > 300:
        reason = reason[:300] + "..."
    return UserInputError(
        f"The checkpoint at step {step} in {Path(run_dir) / 'checkpoints'} cannot be restored "
        f"({type(exc).__name__}: {reason}): it is damaged or does not match run.json. Delete "
        "that step's folder to fall back on an earlier checkpoint, or train again with "
        "--overwrite.")
