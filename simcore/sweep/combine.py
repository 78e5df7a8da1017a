"""A finished sweep as one Dataset: the runs stacked along the sweep dimensions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simcore._errors import UserInputError, bad_paths_are_user_errors
from simcore.sweep._common import MANIFEST, STATES
from simcore.sweep.manifest import read_manifest

if TYPE_CHECKING:
    import xarray as xr


def _manifest_layout(record: dict):
    dims = record["dims"]
    shape = tuple(record["shape"])
    coords = {}
    for axis in record["axes"]:
        name, keys = axis["name"], axis["keys"]
        values = axis["values"]
        if name == "point":
            coords["point"] = ("point", np.arange(len(values)))
            for k, key in enumerate(keys):
                coords[key] = ("point", np.array([v[k] for v in values]))
        else:
            for k, key in enumerate(keys):
                coords[key] = (name, np.array([v[k] for v in values]))
    coords["replica"] = ("replica", np.arange(shape[-1]))
    return dims, shape, coords


def _nested(items: list, shape: tuple[int, ...]):
    if len(shape) == 1:
        return list(items)
    step = len(items) // shape[0]
    return [_nested(items[k * step:(k + 1) * step], shape[1:]) for k in range(shape[0])]


def _done_files(folder: Path, record: dict) -> list[Path]:
    runs = record["runs"]
    missing = [e for e in runs if e["state"] != "done" or not (folder / e["file"]).exists()]
    if missing:
        states = ", ".join(f"{s}: {sum(e['state'] == s for e in missing)}" for s in STATES
                           if any(e["state"] == s for e in missing))
        raise UserInputError(
            f"{len(missing)} of the {len(runs)} runs of the sweep in {folder} are not finished "
            f"({states}); run the sweep again (it resumes) before combining it.")
    files = [folder / e["file"] for e in runs]
    for path in files:
        _check_run_file(path)
    return files


def _check_run_file(path: Path) -> None:
    """A run file is named after the SHA-256 of the parameters it was run with (its
    ``run_parameters``): a file renamed, swapped, copied in or named by an edited manifest
    would otherwise be combined under another run's parameters."""
    from simcore.io.trajectory import read_attrs
    from simcore.sweep.plan import run_file_name

    run_json = read_attrs(path).get("run_parameters")
    if path.name != (run_file_name(str(run_json)) if run_json is not None else None):
        raise UserInputError(
            f"{path} does not hold the run its sweep's manifest names: the file's parameters "
            f"(its run_parameters attribute) do not hash to its name, so it was renamed, "
            f"replaced or edited. Move it away and run the sweep again (it reruns that run).")


def _seed_coords(record: dict, dims, shape) -> dict:
    seeds = np.array([e["seed"] for e in record["runs"]], dtype=np.uint64).reshape(shape)
    files = np.array([e["file"] for e in record["runs"]], dtype=object).reshape(shape)
    return {"seed": (dims, seeds.astype(np.int64)), "run_file": (dims, files)}


@bad_paths_are_user_errors()
def open_sweep(folder: str | Path, **kwargs) -> "xr.Dataset":
    """Open a finished sweep lazily as one :class:`xarray.Dataset`.

    The varied parameters are dimensions (a ``[zip]`` group is one dimension named after
    its first parameter, the others are coordinates on it; ``[[points]]`` give a ``point``
    dimension), followed by ``replica``; per-run ``seed`` and ``run_file`` are
    coordinates. When every run has the same frame times, ``time`` is the frame dimension
    as in :func:`simcore.open_trajectory`; otherwise the dimension stays ``frame`` and
    ``time`` is a coordinate over the sweep dimensions. Runs with different numbers of
    atoms or frames are padded with NaN. Data are dask arrays (``open_mfdataset``);
    ``kwargs`` go to :func:`xarray.open_mfdataset`.
    """
    import netCDF4
    import xarray as xr

    record = read_manifest(folder)  # first: it refuses what is not a path
    folder = Path(folder)
    dims, shape, coords = _manifest_layout(record)
    files = _done_files(folder, record)
    times, sizes = [], []
    for path in files:
        with netCDF4.Dataset(path) as nc:
            times.append(np.asarray(nc["time"][:]))
            sizes.append((nc.dimensions["frame"].size, nc.dimensions["atom"].size))
    same_time = all(t.shape == times[0].shape and np.array_equal(t, times[0]) for t in times)
    ragged = len(set(sizes)) > 1

    from simcore.io.trajectory import STATE_PREFIX

    def prep(ds):
        ds = ds.drop_vars([v for v in ("spatial", "cell_spatial", "cell_angular")
                           if v in ds.variables and v not in ds.dims], errors="ignore")
        # each run's stored final state (for --extend) is no data to combine
        ds = ds.drop_vars([v for v in ds.variables if str(v).startswith(STATE_PREFIX)])
        if ragged:
            ds = ds.assign_coords(atom=np.arange(ds.sizes["atom"]))
            if not same_time:
                ds = ds.assign_coords(frame=np.arange(ds.sizes["frame"]))
        if same_time:
            ds = ds.set_coords("time").swap_dims(frame="time")
        elif "time" in ds.coords:  # files name time a coordinate; per-run times are data
            ds = ds.reset_coords("time")
        return ds

    options = dict(combine="nested", concat_dim=dims, data_vars="all", coords="minimal",
                   compat="override", join="outer", combine_attrs="drop_conflicts",
                   preprocess=prep, chunks={}, parallel=False)
    options.update(kwargs)
    import simcore.accessor  # noqa: F401

    ds = xr.open_mfdataset(_nested([str(f) for f in files], shape), **options)
    if not same_time:
        ds = ds.set_coords("time")
    ds = ds.transpose(*dims, ...)
    ds = ds.assign_coords({**coords, **_seed_coords(record, dims, shape)})
    for key in ("run_parameters", "provenance"):
        ds.attrs.pop(key, None)
    ds.attrs["simcore_model"] = record["model"]
    ds.attrs["simcore_sweep"] = json.dumps(record["sweep"], sort_keys=True, default=str)
    ds.attrs["simcore_sweep_dims"] = " ".join(dims)
    return ds


def is_sweep_folder(path: str | Path) -> bool:
    """True if ``path`` is a folder with a sweep manifest."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST).exists()


@bad_paths_are_user_errors()
def analyze_sweep(folder: str | Path, *, quiet: bool = True, **kwargs) -> "xr.Dataset":
    """The model's diagnostics of every run of a finished sweep, combined in one Dataset.

    Each run is analysed like ``simcore analyze RUN.nc`` (``kwargs`` go to
    :func:`simcore.analysis.analyze_dataset`); the results are stacked along the sweep
    dimensions (sweep parameters, then ``replica``) with ``seed`` and ``run_file``
    coordinates. Diagnostics of different lengths are padded with NaN.
    """
    import xarray as xr

    from simcore.analysis import analyze_dataset
    from simcore.io.trajectory import open_trajectory

    record = read_manifest(folder)  # first: it refuses what is not a path
    folder = Path(folder)
    dims, shape, coords = _manifest_layout(record)
    files = _done_files(folder, record)
    from simcore._progress import progress

    results = []
    bar = progress(len(files), desc="analyse sweep", unit="runs", quiet=quiet)
    for path in files:
        with open_trajectory(path) as ds:
            results.append(analyze_dataset(ds, **kwargs).load())
        bar.update(1)
    bar.close()
    combined = xr.combine_nested(_nested(results, shape), concat_dim=dims, data_vars="all",
                                 coords="different", compat="equals", join="outer",
                                 combine_attrs="drop_conflicts")
    combined = combined.transpose(*dims, ...)
    combined = combined.assign_coords({**coords, **_seed_coords(record, dims, shape)})
    combined.attrs["simcore_model"] = record["model"]
    combined.attrs["simcore_sweep"] = json.dumps(record["sweep"], sort_keys=True, default=str)
    combined.attrs["simcore_sweep_dims"] = " ".join(dims)
    return combined
