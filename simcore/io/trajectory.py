"""Streaming AMBER-compatible NetCDF trajectories (design §3) and their readers.

The layout follows the AMBER NetCDF convention so that xarray, OVITO, MDTraj, ASE and
(with ``format="amber"``, i.e. NETCDF3 64-bit offset) MDAnalysis, VMD and cpptraj read
the files. Model units are dimensionless: the AMBER unit strings are written (readers
require them) and ``long_name`` says "1 angstrom = 1 model length unit, 1 ps = 1 model
time unit". 2D models pad z = 0 and record ``simcore_ndim = 2``.

Frames are appended with netCDF4 directly (xarray cannot append along a dimension).
"""

from __future__ import annotations

import errno
import functools
import json
import os
from pathlib import Path
from typing import Mapping

import netCDF4
import numpy as np

from simcore._errors import UserInputError

FORMATS = {"netcdf4": "NETCDF4", "amber": "NETCDF3_64BIT_OFFSET"}
LENGTH_NOTE = "1 angstrom = 1 model length unit"
TIME_NOTE = "1 picosecond = 1 model time unit"
_CHUNK_BYTES = 2 * 1024 * 1024


def disk_full_error(path, exc: Exception) -> UserInputError:
    """A clear error for a write that failed for lack of space (ENOSPC, EDQUOT, EFBIG)."""
    import shutil

    try:
        free = f"{shutil.disk_usage(Path(path).parent).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    reason = getattr(exc, "strerror", None) or str(exc)
    return UserInputError(
        f"Writing {path} failed ({reason}; {free}): the disk is full or a file-size limit was "
        "reached. Frames up to the last checkpoint are kept: free some space and rerun the same "
        "command with --resume to continue."
    )


_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# netCDF-C can crash while garbage-collecting a handle whose write failed (seen with
# NETCDF3 after EFBIG): such handles are kept alive here and never closed again.
FAILED_HANDLES: list = []


class TrajectoryWriter:
    """Append frames to an AMBER-layout NetCDF trajectory.

    Parameters
    ----------
    path : file to create (or to reopen with ``start_frame`` for a resumed run).
    n_atoms : number of agents/particles N.
    attrs : global attributes (strings or numbers only; structured data as JSON).
    extras : ``{name: (dims, units, long_name)}`` with dims from ``("atom", "spatial")``,
        or ``(dims, units, long_name, {new_dim: size})`` to declare extra fixed dimensions
        (e.g. the linear model's ``component``, the state dimension d). Extras with dims
        ``()`` or ``("spatial",)`` (per-frame totals such as an energy) are always float64.
    fmt : ``"netcdf4"`` (zlib 4 + shuffle, chunked along frame) or ``"amber"``.
    precision : ``"float32"`` or ``"float64"`` for per-atom variables.
    start_frame : None to create a new file; an int to reopen an existing file and
        continue writing at that frame index (frames after it are overwritten).
    """

    def __init__(
        self,
        path: str | Path,
        n_atoms: int,
        attrs: Mapping[str, object],
        extras: Mapping[str, tuple[tuple[str, ...], str, str]] | None = None,
        fmt: str = "netcdf4",
        precision: str = "float32",
        start_frame: int | None = None,
    ):
        self.path = Path(path)
        self.n_atoms = int(n_atoms)
        self.extras = dict(extras or {})
        self._dtype = np.dtype(precision)
        self._failed = False
        if start_frame is None:
            self._ds = netCDF4.Dataset(self.path, "w", format=FORMATS[fmt])
            self._define(attrs, fmt)
            self.n_frames = 0
        else:
            self._ds = netCDF4.Dataset(self.path, "a")
            netcdf4 = self._ds.data_model.startswith("NETCDF4")
            for v in self._ds.variables.values() if netcdf4 else ():
                if v.chunking() != "contiguous" and v.dimensions[:1] == ("frame",):
                    chunk_bytes = int(np.prod(v.chunking())) * v.dtype.itemsize
                    v.set_var_chunk_cache(size=max(chunk_bytes, 1 << 20), nelems=17)
            if self._ds.dimensions["frame"].size < start_frame:
                raise UserInputError(
                    f"The partial trajectory {self.path} holds fewer frames than its checkpoint "
                    "claims; it cannot be resumed. Rerun with --overwrite to start over."
                )
            self.n_frames = int(start_frame)

    def _define(self, attrs, fmt):
        ds, n = self._ds, self.n_atoms
        ds.createDimension("frame", None)
        ds.createDimension("spatial", 3)
        ds.createDimension("atom", n)
        ds.createDimension("cell_spatial", 3)
        ds.createDimension("cell_angular", 3)
        ds.createDimension("label", 5)
        for key, value in attrs.items():
            ds.setncattr(key, value)

        frames_per_chunk = max(1, min(256, _CHUNK_BYTES // max(1, n * 3 * self._dtype.itemsize)))

        def var(name, dtype, dims, units, long_name, per_atom=False):
            kw = {}
            if fmt == "netcdf4":
                shape = [frames_per_chunk if d == "frame" else ds.dimensions[d].size for d in dims]
                if dims[0] == "frame" and not per_atom:
                    shape[0] = 1024
                kw = dict(zlib=True, complevel=4, shuffle=True, chunksizes=shape)
            v = ds.createVariable(name, dtype, dims, **kw)
            if kw:  # frames are written once, in order: a cache of one chunk suffices
                chunk_bytes = int(np.prod(kw["chunksizes"])) * np.dtype(dtype).itemsize
                v.set_var_chunk_cache(size=max(chunk_bytes, 1 << 20), nelems=17)
            if units is not None:
                v.units = units
            v.long_name = long_name
            return v

        sp = ds.createVariable("spatial", "S1", ("spatial",))
        sp[:] = np.array([b"x", b"y", b"z"])
        sp._Encoding = "utf-8"
        cs = ds.createVariable("cell_spatial", "S1", ("cell_spatial",))
        cs[:] = np.array([b"a", b"b", b"c"])
        ca = ds.createVariable("cell_angular", "S1", ("cell_angular", "label"))
        ca[:] = np.array([list(b"alpha"), list(b"beta "), list(b"gamma")], dtype=np.uint8).view("S1")
        t = var("time", "f8", ("frame",), "picosecond", f"time ({TIME_NOTE})")
        t.standard_name = "time"
        t.axis = "T"
        var("coordinates", self._dtype, ("frame", "atom", "spatial"), "angstrom",
            f"position ({LENGTH_NOTE})", per_atom=True)
        var("velocities", self._dtype, ("frame", "atom", "spatial"), "angstrom/picosecond",
            "velocity (model length per model time unit)", per_atom=True)
        var("cell_lengths", "f8", ("frame", "cell_spatial"), "angstrom",
            "periodic box side per axis; 0 for a non-periodic axis")
        var("cell_angles", "f8", ("frame", "cell_angular"), "degree", "box angles")
        for spec in self.extras.values():
            for dim, size in (spec[3] if len(spec) > 3 else {}).items():
                if dim not in ds.dimensions:
                    ds.createDimension(dim, int(size))
        for name, (dims, units, long_name, *_) in self.extras.items():
            total = tuple(dims) in ((), ("spatial",))  # per-frame totals are always f8
            var(name, "f8" if total else self._dtype, ("frame", *dims), units, long_name,
                per_atom=not total)

    def append(self, time: float, variables: Mapping[str, np.ndarray]) -> None:
        """Write one frame at model time ``time`` (variables as returned by ``model.frame``)."""
        ds, k = self._ds, self.n_frames
        try:
            ds["time"][k] = time
            ds["coordinates"][k] = np.asarray(variables["coordinates"], dtype=self._dtype)
            ds["velocities"][k] = np.asarray(variables["velocities"], dtype=self._dtype)
            ds["cell_lengths"][k] = variables["cell_lengths"]
            ds["cell_angles"][k] = (90.0, 90.0, 90.0)
            for name in self.extras:
                ds[name][k] = np.asarray(variables[name], dtype=ds[name].dtype)
        except (OSError, RuntimeError) as exc:
            self._fail(exc)
        self.n_frames = k + 1

    def _fail(self, exc: Exception):
        """netCDF4 reports a full disk as RuntimeError('NetCDF: HDF error' / 'File too large')."""
        self._failed = True
        FAILED_HANDLES.append(self._ds)
        if isinstance(exc, OSError) and exc.errno not in _SPACE_ERRNOS:
            raise exc
        raise disk_full_error(self.path, exc) from None

    def set_attr(self, key: str, value) -> None:
        """Set (or replace) a global attribute."""
        self._ds.setncattr(key, value)

    def get_attr(self, key: str):
        """A global attribute of the file being written."""
        return self._ds.getncattr(key)

    def sync(self) -> None:
        """Flush to disk, so that a checkpoint written afterwards never runs ahead of the file."""
        try:
            self._ds.sync()
        except (OSError, RuntimeError) as exc:
            self._fail(exc)

    def close(self) -> None:
        """Close the file; after a failed write, errors while closing are not reported again."""
        if self._ds.isopen() and not self._failed:
            try:
                self._ds.close()
            except (OSError, RuntimeError) as exc:
                if not self._failed:
                    self._fail(exc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_attrs(path: str | Path) -> dict[str, object]:
    """Global attributes of a simcore file, checking that it is one (UserInputError if not)."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"The file {path} does not exist.")
    try:
        with netCDF4.Dataset(path, "r") as ds:
            attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
    except OSError as exc:
        raise UserInputError(
            f"Cannot read {path} as NetCDF ({exc.strerror or exc}); is it a simcore trajectory?"
        ) from None
    if attrs.get("program") != "simcore" or "run_parameters" not in attrs:
        raise UserInputError(
            f"{path} is a NetCDF file but not a simcore trajectory (no program = 'simcore' "
            "attribute with run_parameters); it was written by another program."
        )
    return attrs


def open_trajectory(path: str | Path, **kwargs):
    """Open a simcore trajectory lazily as an :class:`xarray.Dataset`.

    ``time`` (model time units) becomes the frame coordinate (``ds.sel(time=...)`` works);
    the decoded parameters are at ``ds.simcore.params``. Extra keyword arguments go to
    :func:`xarray.open_dataset` (e.g. ``chunks={}`` for dask).
    """
    import xarray as xr

    import simcore.accessor  # noqa: F401  (registers ds.simcore)

    read_attrs(path)
    ds = xr.open_dataset(path, **kwargs)
    return ds.set_coords("time").swap_dims(frame="time")


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


def atomic_replace(src: str | Path, dst: str | Path) -> None:
    """Rename ``src`` onto ``dst`` atomically (same filesystem)."""
    os.replace(src, dst)
