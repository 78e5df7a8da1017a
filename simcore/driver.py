"""The chunked run loop shared by every engine: advance, write, checkpoint, progress, resume.

The driver knows no physics. It asks the model module (see :mod:`simcore.models`) for an
initial state, advances it ``write_every`` steps at a time inside the Numba kernel,
appends a frame after each chunk and checkpoints every ``checkpoint_every`` frames.

Files: the trajectory is written to ``OUT.part`` and renamed to ``OUT`` when complete;
the checkpoint lives in ``OUT.ckpt`` while the run is in progress. ``resume=True``
continues from the checkpoint; because the kernels' noise is a pure function of (seed,
step, particle), the resumed file equals an uninterrupted run bit for bit (all variables
and all attributes but ``provenance``, which records the resumption).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from simcore import __version__
from simcore._cpu import idle_threads, usable_cores
from simcore._errors import UserInputError
from simcore._progress import progress
from simcore.config import RunSettings, run_parameters_json
from simcore.io.checkpoint import load_checkpoint, save_checkpoint
from simcore.io.trajectory import TrajectoryWriter, atomic_replace, provenance, read_attrs
from simcore.models import get_model
from simcore.rng import kernel_key


def frame_steps(steps: int, write_every: int) -> list[int]:
    """Steps at which frames are written: 0, k, 2k, ... and ``steps`` itself."""
    marks = list(range(0, steps + 1, write_every))
    if marks[-1] != steps:
        marks.append(steps)
    return marks


def partial_paths(out: Path) -> tuple[Path, Path]:
    """Paths of the in-progress trajectory and of its checkpoint."""
    return out.with_name(out.name + ".part"), out.with_name(out.name + ".ckpt")


def _check_output(out: Path, overwrite: bool, resume: bool, run_json: str) -> str:
    """Decide what to do with existing files: 'fresh', 'resume' or 'done'."""
    part, ckpt = partial_paths(out)
    if not out.parent.exists():
        raise UserInputError(f"The output folder {out.parent} does not exist; create it first.")
    if not os.access(out.parent, os.W_OK):
        raise UserInputError(f"The output folder {out.parent} is not writable.")
    if out.is_dir():
        raise UserInputError(f"The output {out} is a folder; give a file name such as run.nc.")
    if overwrite:
        return "fresh"
    if resume:
        if out.exists():
            attrs = read_attrs(out)
            if attrs.get("run_parameters") == run_json:
                return "done"
            raise UserInputError(
                f"{out} already exists and was written with other parameters; --resume will not "
                "touch it. Pass --overwrite to replace it or choose another output name."
            )
        if ckpt.exists() and part.exists():
            return "resume"
        return "fresh"
    if out.exists():
        raise UserInputError(
            f"The output {out} already exists. Pass --overwrite to replace it, or choose another "
            "name; simcore never overwrites a file silently."
        )
    if ckpt.exists() or part.exists():
        raise UserInputError(
            f"An interrupted run of {out} exists ({part.name}, {ckpt.name}). Pass --resume to "
            "continue it, or --overwrite to start over."
        )
    return "fresh"


def run_model(
    model_name: str,
    params,
    settings: RunSettings,
    out: str | Path,
    *,
    preset: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    threads: int | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    stop_after_frames: int | None = None,
) -> Path:
    """Run ``model_name`` with validated ``params`` and ``settings``; return the output path.

    ``stop_after_frames`` (or the environment variable ``SIMCORE_INTERRUPT_AFTER_FRAMES``)
    raises KeyboardInterrupt once that many frames are in the file, as a user's Ctrl-C
    would; it exists to test ``resume``.
    """
    if stop_after_frames is None and os.environ.get("SIMCORE_INTERRUPT_AFTER_FRAMES"):
        stop_after_frames = int(os.environ["SIMCORE_INTERRUPT_AFTER_FRAMES"])
    model = get_model(model_name)
    out = Path(out)
    part, ckpt = partial_paths(out)
    run_json = run_parameters_json(model_name, params, settings, preset)
    action = _check_output(out, overwrite, resume, run_json)
    log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    if action == "done":
        log(f"{out} is already complete; nothing to resume.")
        return out
    for message in model.warnings(params):
        warnings.warn(message, stacklevel=2)
    if threads is not None:
        _set_threads(threads)
    elif getattr(model, "THREADED", True):
        _set_idle_threads(log)

    marks = frame_steps(settings.steps, settings.write_every)
    key = kernel_key(settings.seed)
    dt = model.time_per_step(params)

    if action == "resume":
        state, meta = load_checkpoint(ckpt)
        if meta.get("run_parameters") != run_json:
            raise UserInputError(
                f"The checkpoint {ckpt} belongs to a run with other parameters than the ones "
                "given now; resume with the same command line, or pass --overwrite to start over."
            )
        frames_done = int(meta["frames_written"])
        writer = TrajectoryWriter(part, 0, {}, model.extra_variables(params), settings.format,
                                  settings.precision, start_frame=frames_done)
        old = json.loads(str(meta.get("provenance", "{}")))
        old.setdefault("resumed", []).append(json.loads(provenance(argv))["utc_start"])
        writer.set_attr("provenance", json.dumps(old, sort_keys=True))
        log(f"Resuming {out} at step {marks[frames_done - 1]} of {settings.steps}.")
    else:
        for stale in (part, ckpt):
            stale.unlink(missing_ok=True)
        state = model.init_state(params, settings.seed)
        attrs = {
            "Conventions": "AMBER",
            "ConventionVersion": "1.0",
            "program": "simcore",
            "programVersion": __version__,
            "application": f"simcore {model_name}",
            "title": f"simcore {model_name} run" + (f" (preset {preset})" if preset else ""),
            "simcore_model": model_name,
            "simcore_ndim": np.int32(model.NDIM),
            "length_unit": "model length unit (stored as angstrom; 1 angstrom = 1 unit)",
            "time_unit": "model time unit (stored as picosecond; 1 ps = 1 unit)",
            "run_parameters": run_json,
            "provenance": provenance(argv),
        }
        writer = TrajectoryWriter(part, params.n, attrs, model.extra_variables(params),
                                  settings.format, settings.precision)
        writer.append(0.0, model.frame(state, params))
        frames_done = 1

    def checkpoint():
        writer.sync()
        save_checkpoint(ckpt, {k: v for k, v in state.items() if not k.startswith("_")}, {
            "model": model_name,
            "run_parameters": run_json,
            "frames_written": writer.n_frames,
            "provenance": writer.get_attr("provenance"),
        })

    bar = progress(settings.steps, initial=marks[frames_done - 1], unit="step",
                   desc=model_name, quiet=quiet)
    try:
        if action != "resume":
            checkpoint()
        for f in range(frames_done, len(marks)):
            step0, n = marks[f - 1], marks[f] - marks[f - 1]
            model.advance(state, params, key, step0, n)
            writer.append(marks[f] * dt, model.frame(state, params))
            bar.update(n)
            if stop_after_frames is not None and writer.n_frames >= stop_after_frames:
                raise KeyboardInterrupt
            if writer.n_frames % settings.checkpoint_every == 0 and f != len(marks) - 1:
                checkpoint()
        writer.close()
        atomic_replace(part, out)
        ckpt.unlink(missing_ok=True)
    except KeyboardInterrupt:
        writer.close()
        log(f"Interrupted. Continue with the same command and --resume ({ckpt.name} kept).")
        raise
    finally:
        bar.close()
        writer.close()
    log(f"Wrote {out} ({len(marks)} frames, {settings.steps} steps).")
    return out


def _set_idle_threads(log) -> None:
    """Default thread count: the cores of this process that other processes leave idle
    (spinning OpenMP workers lose more on a shared core than a thread gains)."""
    import numba

    most = numba.config.NUMBA_NUM_THREADS
    threads, busy = idle_threads(most)
    numba.set_num_threads(threads)
    if threads < most:
        log(f"{busy:.1f} of the {len(usable_cores())} cores this process may use are busy "
            f"with other processes: running on {threads} thread(s) instead of {most} "
            "(--threads N chooses; results do not depend on it).")


def _set_threads(threads: int) -> None:
    import numba

    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise UserInputError(
            f"--threads must be between 1 and {numba.config.NUMBA_NUM_THREADS} on this machine "
            f"(got {threads})."
        )
    numba.set_num_threads(threads)
