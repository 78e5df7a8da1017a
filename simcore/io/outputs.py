"""The files of a run beside its output ``OUT`` and what an existing set of them means.

``OUT.part`` (frame log), ``OUT.ckpt`` (checkpoint), ``OUT.lock``, ``OUT.tmp`` (the
assembly) and ``OUT.unstable.nc``; :func:`check_output` decides between a fresh run, a
resume and a finished run (or refuses, with the flag that would proceed),
:func:`check_extend` the same for ``--extend``; :func:`check_space` refuses a run whose
frames cannot fit on the disk before it starts; :func:`write_error` words a failed write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from simcore._env import env_flag
from simcore._errors import UserInputError
from simcore.io.checkpoint import read_checkpoint_meta
from simcore.io.trajectory import read_attrs
from simcore.io.write_errors import disk_full_error, free_bytes, is_space_error

#: set to 1 to skip :func:`check_space` (a file system that reports no free space wrongly)
SKIP_SPACE_ENV = "SIMCORE_SKIP_DISK_CHECK"


def partial_paths(out: Path) -> tuple[Path, Path]:
    """Paths of the in-progress frame log and of its checkpoint."""
    return out.with_name(out.name + ".part"), out.with_name(out.name + ".ckpt")


def side_paths(out: Path) -> dict[str, Path]:
    part, ckpt = partial_paths(out)
    return {"part": part, "ckpt": ckpt, "lock": out.with_name(out.name + ".lock"),
            "tmp": out.with_name(out.name + ".tmp"),
            "unstable": out.with_name(out.stem + ".unstable" + out.suffix)}


def unused_name(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``STEM.2.SUFFIX``, ``STEM.3...``
    (for files simcore makes on its own, which must not replace a user's)."""
    k = 1
    candidate = path
    while os.path.lexists(candidate):
        k += 1
        candidate = path.with_name(f"{path.stem}.{k}{path.suffix}")
    return candidate


def _refuse_special(path: Path, hint: str) -> None:
    """Refuse an existing output that is not a regular file (a device, a pipe, a socket):
    outputs are written to a new file renamed into place, which would replace it."""
    if path.exists() and not path.is_file():
        raise UserInputError(
            f"The output {path} is not a regular file (a device, a pipe or a socket): "
            "simcore writes a new file and renames it into place, which would replace it. "
            f"Give a file name{hint}.")


def check_new_output(path: Path, overwrite: bool, inputs=(), example: str = "") -> None:
    """Refuse an output file that cannot or must not be written: a folder, an existing
    file without ``overwrite``, one of ``inputs`` (never replaced), something that is not
    a regular file (a device, a pipe or a socket: the output is renamed into place, which
    would replace it), a missing folder, or a place that cannot be written
    (:func:`simcore.io.results.probe_output`). ``example``: a file name to suggest."""
    path = Path(path)
    hint = f" such as {example}" if example else ""
    if path.is_dir():  # first: --overwrite would not help
        raise UserInputError(f"The output {path} is a folder; give a file name{hint}.")
    if os.path.lexists(path):
        for given in inputs:
            if Path(given).exists() and path.exists() and path.samefile(given):
                raise UserInputError(f"The output {path} is the input {given}; choose another "
                                     "name (an input is never replaced).")
        _refuse_special(path, hint)
        if not overwrite:
            raise UserInputError(f"The output {path} already exists. Pass --overwrite to "
                                 "replace it.")
    if not path.parent.exists():
        raise UserInputError(f"The output folder {path.parent} does not exist.")
    from simcore.io.results import probe_output

    probe_output(path)  # permissions, read-only or virtual file systems: before the work


def check_folder(out: Path) -> None:
    if out.name in ("", ".", ".."):
        raise UserInputError(f"The output {out} is not a file name; give one such as run.nc.")
    if not out.parent.exists():
        raise UserInputError(f"The output folder {out.parent} does not exist; create it first.")
    if out.is_dir():
        raise UserInputError(f"The output {out} is a folder; give a file name such as run.nc.")
    _refuse_special(out, " such as run.nc")
    if not os.access(out.parent, os.W_OK):
        raise UserInputError(f"The output folder {out.parent} is not writable.")


def check_output(out: Path, overwrite: bool, resume: bool, run_json: str) -> str:
    """Decide what to do with existing files: 'fresh', 'resume' or 'done'."""
    part, ckpt = partial_paths(out)
    if overwrite:
        return "fresh"
    if os.path.islink(out) and not out.exists():  # exists() is False for these
        raise UserInputError(
            f"The output {out} is a symbolic link to a missing file (or a loop of links); "
            "the run's file would replace the link. Remove it or choose another name, or "
            "pass --overwrite to replace it.")
    if resume:
        if ckpt.exists() and part.exists():  # an interrupted run (or extension) of these
            meta = read_checkpoint_meta(ckpt)
            if meta is not None and meta.get("run_parameters") == run_json:
                return "resume"
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
    if ckpt.exists():
        raise UserInputError(
            f"An interrupted run of {out} exists ({part.name}, {ckpt.name}). Pass --resume to "
            "continue it, or --overwrite to start over."
        )
    if part.exists():
        raise UserInputError(
            f"An interrupted run of {out} exists ({part.name}), stopped before its first "
            "checkpoint: --resume or --overwrite starts it over.")
    return "fresh"


def without_run_length(run_json: str, model) -> dict:
    """run_parameters minus what an extension may change: steps and the model's own
    run-length parameters (the record's ``run_length_params``)."""
    record = json.loads(run_json)
    for key in ("steps", *model.run_length_params):
        record.pop(key, None)
    return record


def check_extend(out: Path, model, run_json: str) -> str:
    """'resume' (an interrupted extension), 'done' or 'extend'; else a UserInputError."""
    part, ckpt = partial_paths(out)
    if ckpt.exists() and part.exists():
        meta = read_checkpoint_meta(ckpt)
        if meta is not None and meta.get("run_parameters") == run_json:
            return "resume"
        raise UserInputError(
            f"An interrupted run of {out} with other parameters exists ({part.name}, "
            f"{ckpt.name}); finish it with --resume and its own command line first.")
    if not out.exists():
        raise UserInputError(f"--extend continues a finished run, but {out} does not exist; "
                             "run it without --extend.")
    attrs = read_attrs(out)
    if attrs.get("run_parameters") == run_json:
        return "done"
    old, new = json.loads(str(attrs["run_parameters"])), json.loads(run_json)
    if without_run_length(str(attrs["run_parameters"]), model) != \
            without_run_length(run_json, model):
        changed = sorted(k for k in set(old) | set(new)
                         if old.get(k) != new.get(k) and k != "steps")
        raise UserInputError(
            f"--extend continues {out} with the same parameters and more steps, but these "
            f"differ from the file's: {', '.join(changed)}. Give the original command line "
            "with only the run length changed (or start a new run from a stored frame).")
    if new["steps"] <= old["steps"]:
        raise UserInputError(
            f"--extend needs more steps than {out} has ({old['steps']}); got {new['steps']}.")
    return "extend"


def check_space(out: Path, log_bytes: int, file_bytes: int) -> None:
    """Refuse a run whose frame log cannot fit in the free space of ``out``'s file system.

    ``log_bytes``: what the run still adds to ``OUT.part`` (its frames uncompressed) and
    its checkpoint;
    ``file_bytes``: the frames the NetCDF file gets, an upper bound on its size (it is
    assembled beside the log after the last step, compressed). A log that cannot fit fails
    for certain, so the run is refused now (exit 2 on the command line) rather than when
    the disk fills, possibly hours in; a file that might not fit beside it gets a warning
    (compression usually saves 20-50 %; if it does not fit, the frames stay in the log and
    ``--resume`` finishes the file once space is freed). Skipped when the free space cannot
    be read or the environment variable ``SIMCORE_SKIP_DISK_CHECK`` is on (``1``, ``true``
    or ``yes``: :func:`simcore._env.env_flag`)."""
    import warnings

    from simcore._memory import format_bytes

    if env_flag(SKIP_SPACE_ENV):
        return
    free = free_bytes(out)
    if free is None or free >= log_bytes + file_bytes:
        return
    if free < log_bytes:
        raise UserInputError(
            f"The run needs about {format_bytes(log_bytes)} for its frame log {out.name}.part "
            f"(every frame uncompressed, and its checkpoint), then room for {out.name} (up to "
            f"{format_bytes(file_bytes)}, less when compressed), but {out.parent} has only "
            f"{format_bytes(free)} free. Free some space, choose "
            "another folder with -o, or write fewer frames (a larger --write-every or fewer "
            f"steps). Nothing was written. If the free space is misreported, set "
            f"{SKIP_SPACE_ENV}=1 to run anyway.")
    warnings.warn(
        f"{out.parent} has {format_bytes(free)} free: enough for this run's frame log "
        f"({format_bytes(log_bytes)}) but perhaps not for {out.name} beside it (up to "
        f"{format_bytes(file_bytes)}, less when compressed). If the disk fills at the end, "
        "every frame is kept in the log: free some space and rerun with --resume to finish "
        "the file.", stacklevel=3)


def write_error(path: Path, exc: OSError, checkpointed: int = 1) -> UserInputError:
    """A failed write during the run: a full disk is said so, anything else as it is;
    ``checkpointed`` frames are safe (0: none yet)."""
    kept = ("Frames up to the last checkpoint are kept: fix the problem and rerun the same "
            "command with --resume to continue." if checkpointed else
            "No frame had been checkpointed yet: fix the problem and run the command again "
            "with --overwrite.")
    if is_space_error(exc):
        return disk_full_error(path, exc, kept=kept.replace("fix the problem", "free some space"))
    return UserInputError(f"Writing {path} failed ({exc.strerror or exc}). {kept}")
