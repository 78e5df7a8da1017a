"""Streaming AMBER-compatible NetCDF trajectories and their readers.

The layout follows the AMBER NetCDF convention so that xarray, OVITO, MDTraj, ASE and
(with ``format="amber"``, i.e. NETCDF3 64-bit offset) MDAnalysis, VMD and cpptraj read
the files (tested per model and format: tests/test_interop.py, docs/interop.md). Model
units are dimensionless: the AMBER unit strings are written (readers require them) and
``long_name`` says "1 angstrom = 1 model length unit, 1 ps = 1 model time unit". 2D
models pad z = 0 and record ``simcore_ndim = 2``. ``format="amber"`` files of a system
without a periodic axis have no cell variables (the AMBER convention; MDAnalysis fails
on an all-zero cell), netcdf4 files always have them (ASE needs them).
``velocities`` exists only for models whose particles have a velocity."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import netCDF4
import numpy as np

from simcore._errors import UserInputError, bad_paths_are_user_errors
from simcore.io.nclock import NETCDF_LOCK

if TYPE_CHECKING:
    import xarray as xr

FORMATS = {"netcdf4": "NETCDF4", "amber": "NETCDF3_64BIT_OFFSET"}
LENGTH_NOTE = "1 angstrom = 1 model length unit"
TIME_NOTE = "1 picosecond = 1 model time unit"
_CHUNK_BYTES = 2 * 1024 * 1024
# a run's chunks (chunk_frames): the one completed at the last step is compressed after it,
# so they are kept shorter (HDF5's own advice is 10 KiB - 1 MiB per chunk)
_RUN_CHUNK_BYTES = 512 * 1024


# netCDF-C can crash while garbage-collecting a handle whose write failed (seen with
# NETCDF3 after EFBIG): such handles are kept alive here and never closed again.
FAILED_HANDLES: list = []


def frame_schema(n_atoms: int, attrs: Mapping[str, object],
                 extras: Mapping[str, tuple] | None, precision: str,
                 velocities: bool = True, n_frames: int | None = None,
                 compression: str = "zlib") -> dict:
    """Everything needed to write (and read back) a trajectory: global attributes, fixed
    dimensions, and the per-frame variables in file order with their dtypes and attributes.

    ``velocities``: whether the model's frames hold the AMBER ``velocities`` variable (only
    models whose particles have a velocity: Couzin, hard discs; the overdamped models
    store their deterministic drift as ``drift`` instead).

    ``extras`` is the model's ``extra_variables(params)``: ``{name: (dims, units,
    long_name[, {new_dim: size}])}`` with dims from ``("atom", "spatial", new dims)``;
    extras with dims ``()`` or ``("spatial",)`` (per-frame totals) are always float64.
    The schema is JSON (it is stored in the frame log's header).

    ``n_frames``: the run's frame count, if known; it chooses the file's chunk length along
    the frame axis (:func:`chunk_frames`), recorded as ``frames_per_chunk``.
    ``compression``: "zlib" (HDF5's shuffle + deflate filters, declared at level 1; the
    streams are made by :mod:`simcore.io.h5chunks`) or "none" for netcdf4 files.
    """
    prec = np.dtype(precision).str
    dims = {"spatial": 3, "atom": int(n_atoms), "cell_spatial": 3, "cell_angular": 3,
            "label": 5}
    variables = [
        ("time", "<f8", ["frame"], {"units": "picosecond", "long_name":
                                    f"time ({TIME_NOTE})", "standard_name": "time",
                                    "axis": "T"}),
        ("coordinates", prec, ["frame", "atom", "spatial"],
         {"units": "angstrom", "long_name": f"position ({LENGTH_NOTE})"}),
        ("velocities", prec, ["frame", "atom", "spatial"],
         {"units": "angstrom/picosecond",
          "long_name": "velocity (model length per model time unit)"}),
        ("cell_lengths", "<f8", ["frame", "cell_spatial"],
         {"units": "angstrom", "long_name": "periodic box side per axis; 0 for a non-periodic "
          f"axis ({LENGTH_NOTE})"}),
    ]
    if not velocities:
        variables = [v for v in variables if v[0] != "velocities"]
    for name, spec in (extras or {}).items():
        edims, units, long_name = spec[:3]
        for dim, size in (spec[3] if len(spec) > 3 else {}).items():
            dims.setdefault(dim, int(size))
        total = tuple(edims) in ((), ("spatial",))  # per-frame totals are always f8
        var_attrs = {"long_name": long_name}
        if units is not None:
            var_attrs = {"units": units, **var_attrs}
        variables.append((name, "<f8" if total else prec, ["frame", *edims], var_attrs))
    fields = [[name, dtype, [dims[d] for d in vdims[1:]]] for name, dtype, vdims, _ in variables]
    schema = {"attrs": {k: _json_attr(v) for k, v in attrs.items()}, "dims": dims,
              "fields": fields,
              "variables": {name: {"dims": vdims, "attrs": a} for name, _, vdims, a in variables}}
    if n_frames is not None:
        schema["frames_per_chunk"] = chunk_frames(schema, n_frames)
    if compression != "zlib":  # absent: zlib (logs of earlier versions too)
        schema["compression"] = compression
    return schema


def _json_attr(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _nc_attr(value):
    """JSON attribute value -> what netCDF stores (ints as int32: NETCDF3 has no int64)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    return np.int32(value)


CELL_ANGLES_ATTRS = {"units": "degree", "long_name": "box angles"}
_FIXED = ("time", "coordinates", "velocities", "cell_lengths")


def has_periodic_axis(cell_lengths: np.ndarray) -> bool:
    """Whether any frame has a periodic axis (a non-zero cell length)."""
    return bool(np.any(np.asarray(cell_lengths) != 0))


def _frame_bytes(schema: dict) -> int:
    """Bytes of one frame of the largest per-atom variable (the chunks' unit)."""
    itemsize = max(np.dtype(dtype).itemsize for _, dtype, _ in schema["fields"])
    return max(1, schema["dims"]["atom"] * 3 * itemsize)


def _frames_per_chunk(schema: dict) -> int:
    """Frames per chunk of the per-atom variables: the schema's ``frames_per_chunk``, else
    (logs of older versions, files without a known length) about 2 MiB of frames."""
    if schema.get("frames_per_chunk"):
        return int(schema["frames_per_chunk"])
    return max(1, min(256, _CHUNK_BYTES // _frame_bytes(schema)))


def chunk_frames(schema: dict, n_frames: int) -> int:
    """The chunk length along the frame axis for a run of ``n_frames`` frames.

    Any length from about 64 KiB to 512 KiB of frames compresses alike (zlib's window is
    32 KiB); of those, the one that leaves the fewest frames in the last chunk, i.e.
    divides ``n_frames - 1`` best (ties: the longest). A run's file is written chunk by
    chunk while it goes on, and the last chunk only after the last step: with ``n - 1``
    a multiple of the length it holds the last frame alone, instead of up to a whole
    chunk compressed after the run, and the chunk completed at the last step holds at
    most ~512 KiB (e.g. 101 hard-disc frames of 96 kB: 20 x 5 + 1, not 4 x 21 + 17).
    """
    most = max(1, min(256, _RUN_CHUNK_BYTES // _frame_bytes(schema)))
    least = max(1, min(most, _CHUNK_BYTES // 32 // _frame_bytes(schema)))
    return min(range(least, most + 1), key=lambda c: ((n_frames - 1) % c, -c))


def _frame_chunking(schema: dict, vdims, per_chunk: int) -> tuple[int, bool]:
    """(frames per chunk, shuffle + deflate) of a per-frame variable of a netcdf4 file
    with dimensions ``vdims``; ``per_chunk`` is :func:`_frames_per_chunk` (per-atom
    variables; the small per-frame ones take 1024 frames a chunk)."""
    return (per_chunk if "atom" in vdims else 1024,
            schema.get("compression", "zlib") == "zlib")


def frame_chunk_layouts(schema: dict) -> dict:
    """The chunk layout (h5chunks.encode_frames) of every per-frame variable a netcdf4
    file made by :func:`_define` from ``schema`` will have, known before the file exists
    (the fill values are netCDF's defaults). A writer checks them against the file's."""
    per_chunk = _frames_per_chunk(schema)
    dtypes = {name: dtype for name, dtype, _ in schema["fields"]}
    dims = {name: spec["dims"] for name, spec in schema["variables"].items()}
    dtypes["cell_angles"], dims["cell_angles"] = "<f8", ["frame", "cell_angular"]
    layouts = {}
    for name, vdims in dims.items():
        if name not in dtypes or vdims[0] != "frame":
            continue
        dtype = np.dtype(dtypes[name]).newbyteorder("=")
        frames, compressed = _frame_chunking(schema, vdims, per_chunk)
        fill = np.asarray(netCDF4.default_fillvals[dtype.str[1:]], dtype).tobytes()
        layouts[name] = (frames, (compressed, compressed), fill, dtype.str)
    return layouts


def _define(ds, schema: dict, fmt: str, cell: bool = True,
            state: Mapping[str, tuple[str, tuple[int, ...]]] | None = None) -> None:
    """Create the dimensions, label variables and per-frame variables of a trajectory.

    ``cell = False`` leaves out ``cell_lengths``/``cell_angles`` (the AMBER convention for
    a system without a periodic axis; used for ``format = "amber"``, see docs/interop.md).
    ``state`` (a :func:`state_layout`) also defines the final state's variables
    (:func:`define_state`), to be filled in later.
    Besides the AMBER variables the file holds the index coordinates ``frame(frame)`` and
    ``atom(atom)``, and every per-frame variable names ``time`` in its CF ``coordinates``
    attribute, so xarray opens ``time``, ``frame`` and ``atom`` as coordinates.

    Every definition comes before the label variables' values: netCDF-C leaves define mode
    for a value (netCDF-4: writing and flushing all metadata; classic formats: rewriting
    the header), so values written between definitions cost one such pass each.
    """
    ds.createDimension("frame", None)
    for dim, size in schema["dims"].items():
        ds.createDimension(dim, size)
    for key, value in schema["attrs"].items():
        ds.setncattr(key, _nc_attr(value))
    labels = {"spatial": np.array([b"x", b"y", b"z"]),
              "cell_spatial": np.array([b"a", b"b", b"c"]),
              "cell_angular": np.array([list(b"alpha"), list(b"beta "), list(b"gamma")],
                                       dtype=np.uint8).view("S1")}
    for name, values in labels.items():
        ds.createVariable(name, "S1", (name,) if values.ndim == 1 else (name, "label"))
        ds[name]._Encoding = "utf-8"
    at = ds.createVariable("atom", "i4", ("atom",))
    at.long_name = "particle index (identity order)"
    fr = ds.createVariable("frame", "i4", ("frame",))
    fr.long_name = "frame index"
    per_chunk = _frames_per_chunk(schema)
    dtypes = {name: dtype for name, dtype, _ in schema["fields"]}
    dtypes["cell_angles"] = "<f8"
    variables = dict(schema["variables"])
    variables = {**{k: variables[k] for k in _FIXED if k in variables},
                 "cell_angles": {"dims": ["frame", "cell_angular"], "attrs": CELL_ANGLES_ATTRS},
                 **{k: v for k, v in variables.items() if k not in _FIXED}}
    if not cell:
        variables = {k: v for k, v in variables.items() if k not in ("cell_lengths", "cell_angles")}
    for name, spec in variables.items():
        vdims = tuple(spec["dims"])
        kw = {}
        if fmt == "netcdf4":
            frames, compressed = _frame_chunking(schema, vdims, per_chunk)
            kw = dict(chunksizes=[frames if d == "frame" else schema["dims"][d] for d in vdims])
            if compressed:
                # level 1: 40 % faster than 4 for 3 % larger files (benchmarks/store.py)
                kw.update(zlib=True, complevel=1, shuffle=True)
        v = ds.createVariable(name, np.dtype(dtypes[name]).newbyteorder("="), vdims, **kw)
        for key, value in spec["attrs"].items():
            v.setncattr(key, value)
        if name != "time":
            v.setncattr("coordinates", "time")
    if state is not None:
        define_state(ds, state)
    for name, values in labels.items():
        ds[name][:] = values
    at[:] = np.arange(schema["dims"]["atom"], dtype=np.int32)


STATE_PREFIX = "simcore_state_"


def state_layout(state: Mapping[str, np.ndarray]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype string, shape)}`` of a state: what :func:`define_state` needs."""
    return {name: (np.asarray(v).dtype.str, tuple(np.shape(v))) for name, v in state.items()}


def state_bytes(value: np.ndarray) -> np.ndarray:
    """A state array's bytes as the NC_BYTE values :func:`write_state` stores."""
    return np.ascontiguousarray(value).view(np.uint8).reshape(-1).view(np.int8)


def define_state(ds, layout: Mapping[str, tuple[str, tuple[int, ...]]]) -> None:
    """Create the variables of :func:`write_state` for a state of this ``layout`` (see
    :func:`state_layout`) without their values (a writer fills them in at the end)."""
    for name, (dtype_str, shape) in layout.items():
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype_str).itemsize
        dim = f"{STATE_PREFIX}{name}_bytes"
        ds.createDimension(dim, max(1, size))
        v = ds.createVariable(STATE_PREFIX + name, "i1", (dim,))
        v.dtype_str = dtype_str
        v.shape_json = json.dumps(list(shape))
        v.long_name = (f"the run's final state '{name}' as raw bytes (for `simcore run "
                       "--extend`; not a per-frame variable)")


def write_state(ds, state: Mapping[str, np.ndarray]) -> None:
    """Store a run's final state exactly: each array as raw bytes (NC_BYTE, any dtype,
    NETCDF3 too) in ``simcore_state_<name>``, with its dtype and shape as attributes."""
    define_state(ds, state_layout(state))
    for name, value in state.items():
        raw = state_bytes(value)
        if raw.size:
            ds[STATE_PREFIX + name][:] = raw


def read_state(path: str | Path) -> dict[str, np.ndarray] | None:
    """The final state stored by :func:`write_state`, or None if the file has none."""
    with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
        names = [k for k in ds.variables if k.startswith(STATE_PREFIX)]
        if not names:
            return None
        state = {}
        for key in names:
            v = ds[key]
            v.set_auto_maskandscale(False)
            shape = tuple(json.loads(v.shape_json))
            dtype = np.dtype(v.dtype_str)
            raw = np.asarray(v[:], dtype=np.int8).view(np.uint8)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            state[key[len(STATE_PREFIX):]] = raw[:nbytes].view(dtype).reshape(shape).copy()
    return state


def assemble(part: str | Path, out: str | Path, fmt: str, n_frames: int, crcs: np.ndarray,
             attrs: Mapping[str, object] | None = None,
             final_state: Mapping[str, np.ndarray] | None = None) -> None:
    """Write the NetCDF trajectory ``out`` (created anew) from the first ``n_frames`` frames
    of the frame log ``part``, verifying each frame against ``crcs`` on the way.

    ``attrs`` replace global attributes of the log's schema (e.g. ``provenance``);
    ``final_state`` (the state after the last frame) is stored with :func:`write_state`.
    The file is written in blocks aligned with its chunks, so no chunk is written twice.
    Raises :class:`~simcore.io.framelog.DamagedLogError` if a frame fails its checksum
    and :class:`UserInputError` for a full disk (``out`` is then removed). A run writes
    its file with :class:`simcore.io.assembler.Assembler` while it goes on instead.
    """
    from simcore.io.assembler import Assembler

    Assembler(part, out, fmt).finish(n_frames, crcs, attrs, final_state)


def read_attrs(path: str | Path) -> dict[str, object]:
    """Global attributes of a simcore file, checking that it is one (UserInputError if not).

    Also reads a running or interrupted run's partial file (``OUT.nc.part``)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise UserInputError(f"A trajectory path must be a str or pathlib.Path such as "
                             f"'run.nc' (got {path!r}).")
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"The file {path} does not exist.")
    if path.is_dir():
        raise UserInputError(f"{path} is a folder, not a trajectory file.")
    from simcore.io.framelog import FrameLogReader, is_frame_log

    if is_frame_log(path):
        return dict(FrameLogReader(path).schema["attrs"])
    try:
        with NETCDF_LOCK, netCDF4.Dataset(path, "r") as ds:
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


@bad_paths_are_user_errors()
def open_trajectory(path: str | Path, **kwargs) -> "xr.Dataset":
    """Open a simcore trajectory lazily as an :class:`xarray.Dataset`.

    ``time`` (model time units) becomes the frame coordinate (``ds.sel(time=...)`` works);
    the decoded parameters are at ``ds.simcore.params``. The file's AMBER unit strings
    (kept for the MD readers) become ``units = "1"`` (dimensionless model units, so that
    pint-xarray/cf-xarray do not convert them as ångström or picoseconds) with
    ``model_units`` ("model length unit" ...) and ``file_units`` beside them. Extra keyword arguments go to
    :func:`xarray.open_dataset` (e.g. ``chunks={}`` for dask).

    ``engine`` (an xarray backend named by a str) must read the file's format: ``netcdf4``
    (the default) reads every simcore file, ``scipy`` only ``format="amber"`` (NetCDF3)
    files and ``h5netcdf`` only netcdf4-format (HDF5) files; any other name is a
    :class:`UserInputError` listing those that work.

    ``path`` may also be the partial file of a running or interrupted run
    (``OUT.nc.part``): the Dataset then holds every frame its latest checkpoint covers,
    read from disk on access (``chunks`` is honoured; other keywords are ignored).
    """
    import xarray as xr

    import simcore.accessor  # noqa: F401  (registers ds.simcore)
    from simcore.io.framelog import is_frame_log

    read_attrs(path)
    if is_frame_log(path):
        ds = _open_partial(Path(path))
        if kwargs.get("chunks") is not None:
            ds = ds.chunk(kwargs["chunks"])
    else:
        _check_engine(Path(path), kwargs.get("engine"))
        ds = xr.open_dataset(path, **kwargs)
        ds = ds.drop_vars([k for k in ds.variables if str(k).startswith(STATE_PREFIX)])
    return _normalize(ds).swap_dims(frame="time")


# the xarray engines that read each on-disk format of a simcore file, and the module each
# needs (xarray's scipy backend reads only NetCDF3, h5netcdf only HDF5)
_ENGINES = {"netcdf4": ("netcdf4", "h5netcdf"), "amber": ("netcdf4", "scipy")}
_ENGINE_MODULES = {"netcdf4": "netCDF4", "scipy": "scipy", "h5netcdf": "h5netcdf"}


def _check_engine(path: Path, engine: object) -> None:
    """Raise :class:`UserInputError` unless ``engine`` (None, a backend object, or a name)
    can read the simcore file ``path``; xarray's own errors for a wrong one advise
    installing netcdf4 (which is installed) or list engines that cannot read the file."""
    if not isinstance(engine, str):
        return
    with open(path, "rb") as f:
        fmt = "amber" if f.read(3) == b"CDF" else "netcdf4"
    working = _ENGINES[fmt]
    if engine not in working:
        raise UserInputError(
            f"open_trajectory cannot read {path} with engine={engine!r}: the file is "
            f"{'NetCDF3' if fmt == 'amber' else 'NetCDF4/HDF5'} (simcore's {fmt} format), "
            f"which xarray reads with engine={working[0]!r} (the default) or engine="
            f"{working[1]!r}. Leave engine out or pass one of those.")
    import importlib

    module = _ENGINE_MODULES[engine]
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserInputError(
            f"engine={engine!r} needs the {module} package, which is not installed: pip "
            f"install {module}, or leave engine out (netcdf4 reads every simcore file)."
        ) from None


def _normalize(ds):
    """The same view of every simcore file (netcdf4, amber, partial, old files): ``time``,
    ``frame`` and ``atom`` coordinates, str labels without padding, and the cell variables
    (zeros: no periodic axis) where an AMBER file leaves them out."""
    import xarray as xr

    ds = ds.set_coords("time")
    n = ds.sizes["frame"]
    if "frame" not in ds.coords:
        ds = ds.assign_coords(frame=("frame", np.arange(n, dtype=np.int32)))
    if "atom" not in ds.coords:
        ds = ds.assign_coords(atom=("atom", np.arange(ds.sizes["atom"], dtype=np.int32)))
    if "cell_lengths" not in ds.variables:
        ds = ds.assign(
            cell_lengths=xr.Variable(("frame", "cell_spatial"), np.zeros((n, 3)), attrs={
                "units": "angstrom", "long_name": "periodic box side per axis; 0 for a "
                "non-periodic axis (not stored: the file has no periodic axis)"}),
            cell_angles=xr.Variable(("frame", "cell_angular"), np.full((n, 3), 90.0),
                                    attrs=dict(CELL_ANGLES_ATTRS)))
    labels = {}
    for dim in ("spatial", "cell_spatial", "cell_angular"):
        if dim in ds.coords:
            labels[dim] = [(v.decode() if isinstance(v, bytes) else str(v)).strip()
                           for v in ds[dim].values]
        else:
            labels[dim] = {"spatial": ["x", "y", "z"], "cell_spatial": ["a", "b", "c"],
                           "cell_angular": ["alpha", "beta", "gamma"]}[dim]
    ds = ds.assign_coords({k: (k, np.array(v, dtype=object)) for k, v in labels.items()})
    for var in ds.variables.values():
        model_units = _MODEL_UNITS.get(var.attrs.get("units"))
        if model_units is not None:  # honest units for pint/cf-xarray (see open_trajectory)
            var.attrs = {**var.attrs, "units": "1", "model_units": model_units,
                         "file_units": var.attrs["units"]}
    return ds


# the AMBER unit strings of the file -> what they mean in a simcore file
_MODEL_UNITS = {"angstrom": "model length unit", "picosecond": "model time unit",
                "angstrom/picosecond": "model length unit per model time unit"}


def _open_partial(part: Path):
    """An xarray view of the checkpointed frames of a frame log (memory-mapped)."""
    import xarray as xr

    from simcore.io.checkpoint import read_checkpoint_meta
    from simcore.io.framelog import FrameLogReader

    reader = FrameLogReader(part)
    ckpt = part.with_name(part.name[:-len(".part")] + ".ckpt") if part.name.endswith(".part") \
        else None
    meta = read_checkpoint_meta(ckpt) if ckpt is not None and ckpt.exists() else None
    if meta is None:
        raise UserInputError(
            f"{part} holds no checkpointed frame yet (no readable {ckpt.name if ckpt else 'checkpoint'}"
            " beside it); try again after the run's first checkpoint.")
    n = min(int(meta["frames_written"]), reader.n_complete)
    records = reader.records(n)
    schema = reader.schema
    attrs = dict(schema["attrs"], provenance=meta.get("provenance", schema["attrs"].get(
        "provenance", "{}")))
    data = {}
    for name, _, _ in schema["fields"]:
        spec = schema["variables"][name]
        data[name] = xr.Variable(spec["dims"], records[name], attrs=spec["attrs"])
    if "cell_lengths" in data:
        data["cell_angles"] = xr.Variable(("frame", "cell_angular"), np.full((n, 3), 90.0),
                                          attrs=dict(CELL_ANGLES_ATTRS))
    coords = {"spatial": ("spatial", np.array(["x", "y", "z"], dtype=object)),
              "cell_spatial": ("cell_spatial", np.array(["a", "b", "c"], dtype=object)),
              "cell_angular": ("cell_angular", np.array(["alpha", "beta", "gamma"], dtype=object)),
              "frame": ("frame", np.arange(n, dtype=np.int32)),
              "atom": ("atom", np.arange(schema["dims"]["atom"], dtype=np.int32))}
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds.attrs["simcore_partial"] = (f"partial file of a running or interrupted run: the "
                                   f"{n} checkpointed frames")
    return ds
