"""Run checkpoints: the full float64 state plus where the run stands, written atomically.

A checkpoint is a ``.npz`` (no pickles) beside the partial trajectory: arrays
``state__<name>`` and a JSON ``meta`` record (model, canonical run_parameters, the next
step, the number of frames already in the file). It is written to a temporary name and
moved into place with :func:`os.replace`, so a crash never leaves a torn checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from simcore._errors import UserInputError
from simcore.io.trajectory import disk_full_error

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, np.ndarray], meta: dict) -> None:
    """Atomically write ``state`` and ``meta`` to ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    record = dict(meta, checkpoint_version=CHECKPOINT_VERSION)
    arrays = {f"state__{k}": np.asarray(v) for k, v in state.items()}
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(record, sort_keys=True)), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise disk_full_error(path, exc) from None
        raise


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(state, meta)``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            state = {k[len("state__"):]: data[k].copy() for k in data.files if k.startswith("state__")}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise UserInputError(
            f"The checkpoint {path} is unreadable or not a simcore checkpoint ({exc}). "
            "Rerun with --overwrite to start the run over."
        ) from None
    if meta.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise UserInputError(
            f"The checkpoint {path} was written by an incompatible simcore version; "
            "rerun with --overwrite to start over."
        )
    return state, meta
