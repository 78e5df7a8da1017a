"""A run's NetCDF-4 file created from a template: netCDF-C defines each file layout once.

Creating a trajectory file with netCDF-C (its definitions through netCDF4-python: a dozen
dimensions and variables with their chunking, filters and attributes, then HDF5's metadata
written at close) takes 5-9 ms of a core, most of what a short run's finish costs. All of
it depends only on the file's layout: its schema without the global attributes, whether it
has cell variables, and the final state's variables. :func:`create` therefore has
netCDF-C write each layout once per process, without global attributes, keeps the empty
file's bytes, and makes every file of that layout by copying them (~0.2 ms). The global
attributes (each run's parameters and provenance) are then written through HDF5 as
netCDF-C writes them — text as a scalar, null-terminated, fixed-length ASCII string
(``NC_CHAR``), an integer as a one-element int32 array, a float as a one-element float64
array — and netCDF-C's ``_NCProperties`` attribute is moved after them, where netCDF-C
puts it, opened with netCDF-C's own HDF5 format bounds (1.8 to the latest). A value of any
other kind (text that is not ASCII, which netCDF4-python stores as ``NC_STRING``; empty
text; lists; booleans) sends the file through netCDF-C whole, as before.

The result is attribute for attribute (HDF5 type, dataspace, value and order), variable
for variable the file netCDF-C makes: tests/test_ncfile.py compares the two for every
model's layout, through h5py and through netCDF-C.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import numpy as np

_MAX_TEMPLATES = 8  # layouts kept per process (a sweep over N has one per N)
_templates: OrderedDict[str, tuple[bytes, dict]] = OrderedDict()
_templates_lock = threading.Lock()
_NC_PROPERTIES = "_NCProperties"
# netCDF-C opens every file it writes with these bounds (hdf5set_format_compatibility)
_NETCDF_C_LIBVER = ("v108", "latest")


def create(path: str | Path, schema: dict, fmt: str, cell: bool,
           state: Mapping[str, tuple[str, tuple[int, ...]]] | None):
    """Create the NetCDF-4 file ``path`` as :func:`simcore.io.trajectory._define` defines
    it with netCDF-C (``schema`` with its global attributes ``schema["attrs"]``, ``cell``
    and ``state`` as there), replacing any file there. Returns the file open for writing
    with h5py (``r+``) and the layout's memo: a dict kept with its template, where a
    caller keeps what it reads from such a file's layout for the next file of the same
    layout (a fresh dict for a file made without a template). ``fmt`` must be
    ``"netcdf4"``."""
    import h5py

    if fmt != "netcdf4":
        raise ValueError(f"a template is a NetCDF-4 file (got format {fmt!r})")
    attrs = {name: _hdf5_attribute(value) for name, value in schema["attrs"].items()}
    key = _layout_key(schema, cell, state)
    if key is None or any(spec is None for spec in attrs.values()):
        _define_with_netcdf_c(path, schema, fmt, cell, state)  # only netCDF-C writes it
        return h5py.File(path, "r+"), {}
    with _templates_lock:
        entry = _templates.get(key)
        if entry is not None:
            _templates.move_to_end(key)
    if entry is None:
        _define_with_netcdf_c(path, dict(schema, attrs={}), fmt, cell, state)
        entry = (Path(path).read_bytes(), {})
        with _templates_lock:
            _templates[key] = entry
            while len(_templates) > _MAX_TEMPLATES:
                _templates.popitem(last=False)
    else:
        with open(path, "wb") as fh:
            fh.write(entry[0])
    h5 = h5py.File(path, "r+", libver=_NETCDF_C_LIBVER)
    try:
        _write_global_attributes(h5, attrs)
    except BaseException:
        h5.close()
        raise
    return h5, entry[1]


def forget_templates() -> None:
    """Drop this process's templates (tests; a process's files are made from them)."""
    with _templates_lock:
        _templates.clear()


def _define_with_netcdf_c(path, schema, fmt, cell, state) -> None:
    import netCDF4

    from simcore.io.trajectory import FAILED_HANDLES, FORMATS, _define

    ds = netCDF4.Dataset(path, "w", format=FORMATS[fmt])
    try:
        _define(ds, schema, fmt, cell=cell, state=state)
    except BaseException:
        try:
            ds.close()
        except (OSError, RuntimeError):
            FAILED_HANDLES.append(ds)  # never closed again (see there)
        raise
    ds.close()


def _layout_key(schema: dict, cell: bool, state) -> str | None:
    """What a file's bytes before its global attributes depend on (with the libraries), or
    None for a schema that is not plain JSON (a frame log's always is): no template."""
    layout = {k: v for k, v in schema.items() if k != "attrs"}
    try:
        return json.dumps([layout, bool(cell), None if state is None else
                           {name: [dtype, list(shape)] for name, (dtype, shape)
                            in state.items()}], sort_keys=True)
    except (TypeError, ValueError):
        return None


def _hdf5_attribute(value):
    """``(numpy value, is text)`` of a global attribute as :func:`trajectory._define`
    hands it to netCDF4-python (after ``_nc_attr``), for the kinds written here; None for
    any other kind (netCDF-C writes those)."""
    from simcore.io.trajectory import _nc_attr

    value = _nc_attr(value)
    if isinstance(value, str):
        if not value or not value.isascii():
            return None
        return np.bytes_(value.encode("ascii")), True
    if isinstance(value, bool):
        return None
    if isinstance(value, np.int32):
        return np.array([value], dtype=np.int32), False
    if isinstance(value, float):  # a Python float: NC_DOUBLE
        return np.array([value], dtype=np.float64), False
    return None


def _write_global_attributes(h5, attrs: Mapping[str, tuple]) -> None:
    """``attrs`` on the root group in order, each as netCDF-C stores it, then
    ``_NCProperties`` recreated after them (netCDF-C writes it when the file is first
    closed, after the user's attributes)."""
    from h5py import h5a, h5s, h5t

    root = h5.id
    properties = h5a.open(root, _NC_PROPERTIES.encode()) if h5a.exists(
        root, _NC_PROPERTIES.encode()) else None
    moved = None
    if properties is not None:
        moved = (properties.get_type(), properties.get_space(),
                 np.empty(properties.shape, dtype=properties.dtype))
        properties.read(moved[2], mtype=moved[0])
        properties.close()
        h5a.delete(root, _NC_PROPERTIES.encode())
    for name, (value, text) in attrs.items():
        if text:
            tid = h5t.C_S1.copy()
            tid.set_size(len(value))
            tid.set_strpad(h5t.STR_NULLTERM)
            tid.set_cset(h5t.CSET_ASCII)
            attr = h5a.create(root, name.encode(), tid, h5s.create(h5s.SCALAR))
            attr.write(np.array(value), mtype=tid)
        else:
            attr = h5a.create(root, name.encode(), h5t.py_create(value.dtype),
                              h5s.create_simple(value.shape))
            attr.write(value)
        attr.close()
    if moved is not None:
        tid, space, value = moved
        attr = h5a.create(root, _NC_PROPERTIES.encode(), tid, space)
        attr.write(value, mtype=tid)
        attr.close()
