"""Run checkpoints: the full float64 state, where the run stands, and the checksum of
every frame written so far, written atomically and durably.

A checkpoint is a ``.npz`` (no pickles) beside the partial trajectory: arrays
``state__<name>``, ``frame_crc32`` (the CRC-32 of each frame record of the frame log,
:mod:`simcore.io.framelog`) and a JSON ``meta`` record (model, canonical run_parameters,
the number of frames it covers, provenance). It is written to a temporary name, fsynced,
moved into place with :func:`os.replace` and the folder fsynced, so a crash or power
loss leaves either the previous checkpoint or the new one, never a torn one. The driver
fsyncs the frame log before it writes a checkpoint, so every frame a checkpoint counts
is on disk.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from simcore._errors import UserInputError
from simcore.io.atomic import atomic_output
from simcore.io.write_errors import disk_full_error, is_space_error

CHECKPOINT_VERSION = 2


def save_checkpoint(path: str | Path, state: dict[str, np.ndarray], meta: dict,
                    frame_crcs: np.ndarray) -> None:
    """Atomically and durably write ``state``, ``meta`` and the frames' checksums."""
    path = Path(path)
    record = dict(meta, checkpoint_version=CHECKPOINT_VERSION)
    arrays = {f"state__{k}": np.asarray(v) for k, v in state.items()}
    try:
        with atomic_output(path, tmp=path.with_name(path.name + ".tmp"), durable=True,
                           translate=False) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(record, sort_keys=True)),
                     frame_crc32=np.asarray(frame_crcs, dtype=np.uint32), **arrays)
    except OSError as exc:
        if is_space_error(exc):
            raise disk_full_error(path, exc) from None
        raise UserInputError(
            f"Writing the checkpoint {path} failed ({exc.strerror or exc}). The previous "
            "checkpoint is kept: fix the problem and rerun the same command with --resume."
        ) from None


def _unreadable(path: Path, why) -> UserInputError:
    return UserInputError(
        f"The checkpoint {path} is unreadable or not a simcore checkpoint ({why}). "
        "Rerun with --overwrite to start the run over.")


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict, np.ndarray]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(state, meta, frame_crcs)``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if not isinstance(meta, dict):
                raise ValueError("meta is not a record")
            crcs = data["frame_crc32"].astype(np.uint32) if "frame_crc32" in data.files else None
            state = {k[len("state__"):]: data[k].copy() for k in data.files
                     if k.startswith("state__")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _unreadable(path, exc) from None
    if meta.get("checkpoint_version") != CHECKPOINT_VERSION or crcs is None:
        raise UserInputError(
            f"The checkpoint {path} was written by an incompatible simcore version; "
            "rerun with --overwrite to start over."
        )
    frames = meta.get("frames_written")
    if not isinstance(frames, int) or frames < 1 or frames != len(crcs):
        raise _unreadable(path, f"it counts {frames!r} frames but holds {len(crcs)} checksums")
    return state, meta, crcs


def read_checkpoint_meta(path: str | Path) -> dict | None:
    """The ``meta`` record of a checkpoint, or None if it is missing or unreadable
    (cheap: the state arrays are not read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
        return meta if isinstance(meta, dict) else None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def check_state_like(path: str | Path, state: dict[str, np.ndarray],
                     reference: dict[str, np.ndarray]) -> None:
    """Refuse a checkpoint whose state arrays differ in name, shape or dtype from
    ``reference`` (a fresh initial state of the same parameters)."""
    expected = {k: v for k, v in reference.items() if not k.startswith("_")}
    problems = []
    for name in sorted(set(expected) | set(state)):
        if name not in state:
            problems.append(f"{name} is missing")
        elif name not in expected:
            problems.append(f"{name} is unexpected")
        else:
            a, b = np.asarray(state[name]), np.asarray(expected[name])
            if a.shape != b.shape or a.dtype != b.dtype:
                problems.append(f"{name} is {a.dtype}{list(a.shape)}, expected "
                                f"{b.dtype}{list(b.shape)}")
    if problems:
        raise UserInputError(
            f"The checkpoint {path} does not fit the run's parameters: "
            + "; ".join(problems) + ". It belongs to another run or another simcore version; "
            "rerun with --overwrite to start over.")
