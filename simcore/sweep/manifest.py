"""The manifest (``manifest.json``): the record of a sweep's runs and their states."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from simcore._errors import UserInputError
from simcore.io.atomic import write_text
from simcore.sweep._common import MANIFEST, MANIFEST_VERSION, STATES


if TYPE_CHECKING:  # annotations only (the plan module imports this one)
    from simcore.sweep.plan import Plan, Run


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
    if not isinstance(folder, (str, os.PathLike)):
        raise UserInputError(f"A sweep folder must be a path (got {folder!r}).")
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
