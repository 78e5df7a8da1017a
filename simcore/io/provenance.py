"""The provenance record of a run: package versions, git commit, command line, time, host."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Mapping


@functools.lru_cache(maxsize=1)
def _software_versions() -> tuple[dict, str | None]:
    """Package versions and the git commit of the simcore checkout (once per process:
    two ``git`` calls cost ~20 ms, which adds up over the runs of a sweep)."""
    import importlib.metadata as md
    import subprocess

    versions = {}
    for pkg in ("simcore", "numpy", "numba", "netCDF4", "xarray", "pydantic"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    commit = None
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
        if commit:
            dirty = subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5,
            ).stdout.strip()
            commit += "-dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return versions, commit


def provenance(argv=None, extra: Mapping[str, object] | None = None) -> str:
    """JSON provenance: package versions, git commit, argv, UTC time, host."""
    import datetime
    import platform
    import socket
    import sys

    versions, commit = _software_versions()
    record = {
        "python": sys.version.split()[0],
        "versions": dict(versions),
        "git_commit": commit,
        "argv": list(sys.argv if argv is None else argv),
        "utc_start": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
    record.update(extra or {})
    return json.dumps(record, sort_keys=True)
