"""A run's file made from its layout's template (simcore/io/ncfile.py) is the file netCDF-C
makes: every object, every attribute (HDF5 type, dataspace, value, order) and every
variable's storage, compared through h5py with one written by netCDF-C from the same
schema, for each model's layout; netCDF-C reads the copy's attributes as its own."""

from __future__ import annotations

import h5py
import netCDF4
import numpy as np
import pytest

import simcore
from simcore.io import assembler, ncfile

RUNS = {
    "couzin": dict(steps=40, write_every=10, overrides={"n": 12}),
    "abp": dict(steps=40, write_every=10, overrides={"n": 16}),
    "harddisc": dict(overrides={"n": 12, "t_end": 0.4, "frame_dt": 0.1}),
    "linear": dict(steps=40, write_every=10, overrides={"n": 10}),
}


def _attribute(obj_id, name: bytes, f: h5py.File) -> tuple:
    """An attribute as HDF5 stores it: type, dataspace and value (references by name)."""
    attr = h5py.h5a.open(obj_id, name)
    tid, space = attr.get_type(), attr.get_space()
    kind = (tid.get_class(), tid.get_size())
    if tid.get_class() == h5py.h5t.STRING:
        kind += (tid.get_strpad(), tid.get_cset(), tid.is_variable_str())
    elif tid.get_class() in (h5py.h5t.INTEGER, h5py.h5t.FLOAT):
        kind += (tid.get_order(), attr.dtype.str)
    value = h5py.AttributeManager(f[h5py.h5i.get_name(obj_id).decode()])[name.decode()]
    return (name.decode(), kind, space.get_simple_extent_type(), space.shape, _plain(value, f))


def _plain(value, f: h5py.File):
    """Comparable form of an attribute's value; object references become object names."""
    if isinstance(value, h5py.Reference):
        return f[value].name
    if isinstance(value, np.ndarray):
        if value.dtype.names:  # netCDF-C's REFERENCE_LIST: (dataset, dimension index)
            return [tuple(_plain(item[k], f) for k in value.dtype.names) for item in value]
        if value.dtype == object:
            return [_plain(item, f) for item in value.ravel()]
        return (value.dtype.str, value.tolist())
    if isinstance(value, (np.generic, bytes, str, int, float)):
        return (type(value).__name__, value.tolist() if isinstance(value, np.generic)
                else value)
    return repr(value)


def _attributes(obj_id, f: h5py.File) -> list:
    """An object's attributes in creation order (netCDF-C tracks it on every object)."""
    names: list[bytes] = []
    h5py.h5a.iterate(obj_id, lambda name, *_: names.append(name),
                     index_type=h5py.h5.INDEX_CRT_ORDER)
    return [_attribute(obj_id, name, f) for name in names]


def describe(path) -> dict:
    """Every object of an HDF5 file with its attributes and, for datasets, storage."""
    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = _attributes(f.id, f)

        def visit(name, obj):
            entry = {"attrs": _attributes(obj.id, f)}
            if isinstance(obj, h5py.Dataset):
                plist = obj.id.get_create_plist()
                entry.update(dtype=obj.dtype.str, shape=obj.shape, maxshape=obj.maxshape,
                             chunks=obj.chunks, fill=_plain(obj.fillvalue, f),
                             filters=[plist.get_filter(i)[:3]
                                      for i in range(plist.get_nfilters())])
            out[name] = entry

        f.visititems(visit)
    return out


@pytest.fixture
def run_layouts(tmp_path, monkeypatch):
    """Each model's small run written in this process, with the arguments its file's
    creation got (schema with global attributes, cell, final state's layout)."""
    monkeypatch.setattr(assembler, "BACKGROUND", False)
    ncfile.forget_templates()
    made, create = {}, ncfile.create

    def recording(path, schema, fmt, cell, state):
        made[str(path)] = (schema, fmt, cell, state)
        return create(path, schema, fmt, cell, state)

    monkeypatch.setattr(ncfile, "create", recording)
    layouts = {}
    for model, kw in RUNS.items():
        out = simcore.run(model, out=tmp_path / f"{model}.nc", seed=3, **kw)
        (args,) = [v for k, v in made.items() if k.startswith(str(out))]
        layouts[model] = (out, args)
        made.clear()
    yield layouts
    ncfile.forget_templates()


@pytest.mark.parametrize("model", list(RUNS))
def test_a_file_made_from_its_template_is_netcdf_cs_own(run_layouts, tmp_path, model):
    """The first file of a layout (which makes the template) and a later copy describe
    exactly as netCDF-C's file from the same schema; the run's own file has netCDF-C's
    global attributes too, and netCDF-C reads them back as they were given."""
    out, (schema, fmt, cell, state) = run_layouts[model]
    reference = tmp_path / "reference.nc"
    ncfile._define_with_netcdf_c(reference, schema, fmt, cell, state)
    ncfile.forget_templates()
    first, memo = ncfile.create(tmp_path / "first.nc", schema, fmt, cell, state)
    first.close()
    memo["checked"] = True
    copy, memo = ncfile.create(tmp_path / "copy.nc", schema, fmt, cell, state)
    copy.close()
    assert memo.get("checked"), "the second file of a layout was not made from its template"
    expected = describe(reference)
    assert describe(tmp_path / "first.nc") == expected
    assert describe(tmp_path / "copy.nc") == expected
    assert describe(out)["/"] == expected["/"]
    with netCDF4.Dataset(out) as ours, netCDF4.Dataset(reference) as theirs:
        assert ours.ncattrs() == theirs.ncattrs() == list(schema["attrs"])
        for name in theirs.ncattrs():
            np.testing.assert_array_equal(ours.getncattr(name), theirs.getncattr(name))


@pytest.mark.parametrize("extra", [
    {"title": "run by J\u00f6rg"},  # not ASCII: netCDF4-python writes NC_STRING
    {"note": ""},
    {"flags": [1, 2, 3]},
    {"ratio": 0.25, "count": 7},  # these two are written through HDF5, as NC_DOUBLE/NC_INT
])
def test_unusual_global_attributes_are_netcdf_cs_too(run_layouts, tmp_path, extra):
    """Attribute values the copy does not write itself go through netCDF-C whole; either
    way the file is the one netCDF-C makes."""
    _, (schema, fmt, cell, state) = run_layouts["couzin"]
    schema = dict(schema, attrs={**schema["attrs"], **extra})
    reference = tmp_path / "reference.nc"
    ncfile._define_with_netcdf_c(reference, schema, fmt, cell, state)
    for name in ("a.nc", "b.nc"):  # the second may be a template's copy
        made, _ = ncfile.create(tmp_path / name, schema, fmt, cell, state)
        made.close()
        assert describe(tmp_path / name) == describe(reference)


def test_templates_are_kept_per_layout_and_bounded(run_layouts, tmp_path, monkeypatch):
    """A new layout gets its own template (a file of another layout is never a copy of
    it), and the process keeps at most _MAX_TEMPLATES of them."""
    _, (schema, fmt, cell, state) = run_layouts["couzin"]
    monkeypatch.setattr(ncfile, "_MAX_TEMPLATES", 2)
    ncfile.forget_templates()
    for n in (12, 13, 14):
        other = dict(schema, dims={**schema["dims"], "atom": n})
        made, _ = ncfile.create(tmp_path / f"n{n}.nc", other, fmt, cell, state)
        made.close()
        with netCDF4.Dataset(tmp_path / f"n{n}.nc") as ds:
            assert ds.dimensions["atom"].size == n
    assert len(ncfile._templates) == 2


def test_netcdf_c_extends_a_copy(run_layouts, tmp_path):
    """A copy reopened by netCDF-C (the assembler's path for attributes that changed at the
    end, or a final state whose layout was not known at the start) takes new variables
    and attributes, and readers see everything: the copy is an ordinary netCDF-4 file."""
    from simcore.io.trajectory import read_state, write_state

    _, (schema, fmt, cell, _) = run_layouts["couzin"]
    for name in ("first.nc", "copy.nc"):  # the template's first file, then a copy
        made, _ = ncfile.create(tmp_path / name, schema, fmt, cell, None)
        made.close()
        state = {"positions": np.arange(36.0).reshape(12, 3), "step": np.array([7])}
        with netCDF4.Dataset(tmp_path / name, "a") as ds:
            write_state(ds, state)
            ds.setncattr("simcore_incomplete", "stopped")
        restored = read_state(tmp_path / name)
        for key, value in state.items():
            np.testing.assert_array_equal(restored[key], value)
        with netCDF4.Dataset(tmp_path / name) as ds:
            assert ds.ncattrs() == [*schema["attrs"], "simcore_incomplete"]
            assert ds.getncattr("run_parameters") == schema["attrs"]["run_parameters"]
