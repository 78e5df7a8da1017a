"""The frame log -> NetCDF assembly and the readers: AMBER layout, both formats, metadata
round trip."""

from __future__ import annotations

import json
import sys

import netCDF4
import numpy as np
import pytest
import xarray as xr

import simcore
from simcore.io.framelog import FrameLogWriter
from simcore.io.trajectory import assemble, frame_schema, open_trajectory, read_attrs


@pytest.mark.parametrize("fmt,expected", [("netcdf4", "NETCDF4"), ("amber", "NETCDF3_64BIT_OFFSET")])
def test_writer_round_trip_both_formats(tmp_path, fmt, expected):
    rng = np.random.default_rng(0)
    n, frames = 7, 5
    path = tmp_path / f"t_{fmt}.nc"
    attrs = {"Conventions": "AMBER", "ConventionVersion": "1.0", "program": "simcore",
             "programVersion": "x", "run_parameters": json.dumps({"a": 1}),
             "simcore_ndim": np.int32(2)}
    extras = {"theta": (("atom",), "radian", "angle")}
    data = []
    part = tmp_path / "t.part"
    log = FrameLogWriter.create(part, frame_schema(n, attrs, extras, "float32"))
    for k in range(frames):
        frame = {"coordinates": rng.random((n, 3)), "velocities": rng.random((n, 3)),
                 "cell_lengths": np.array([3.0, 4.0, 0.0]), "theta": rng.random(n),
                 "time": 0.5 * k}
        log.append(frame)
        data.append(frame)
    log.sync()
    log.close()
    assemble(part, path, fmt, frames, log.crcs)
    with netCDF4.Dataset(path) as nc:
        assert nc.file_format == expected
        assert nc.Conventions == "AMBER" and nc.ConventionVersion == "1.0"
        assert nc.dimensions["frame"].isunlimited()
        assert nc["coordinates"].units == "angstrom"
        assert "scale_factor" not in nc["theta"].ncattrs()
        assert nc.dimensions["label"].size == 5
    ds = xr.open_dataset(path)
    # xarray decodes the char (cell_angular, label) labels to strings
    assert ds.sizes == {"frame": frames, "atom": n, "spatial": 3, "cell_spatial": 3,
                        "cell_angular": 3}
    assert list(ds["spatial"].values) == ["x", "y", "z"]
    np.testing.assert_array_equal(ds["time"].values, 0.5 * np.arange(frames))
    for k in range(frames):
        # float32 storage: exact after the same cast
        np.testing.assert_array_equal(ds["coordinates"].values[k],
                                      data[k]["coordinates"].astype(np.float32))
        np.testing.assert_array_equal(ds["theta"].values[k], data[k]["theta"].astype(np.float32))
    np.testing.assert_array_equal(ds["cell_angles"].values, 90.0)
    assert ds["coordinates"].sel(spatial="y").shape == (frames, n)
    ds.close()


@pytest.mark.parametrize("xarray_first", [False, True])
def test_accessor_without_importing_xarray_with_simcore(small_couzin_run, xarray_first):
    """``import simcore`` leaves xarray unloaded (0.6 s a command-line run never uses);
    ds.simcore is there as soon as xarray is imported, before or after simcore, and
    through xarray's own open_dataset."""
    import subprocess
    import sys

    script = ("import sys\n"
              + ("import xarray\n" if xarray_first else "")
              + "import simcore\n"
              + ("" if xarray_first else "assert 'xarray' not in sys.modules\n")
              + "import xarray as xr\n"
              f"ds = xr.open_dataset({str(small_couzin_run)!r})\n"
              "print(ds.simcore.model, ds.simcore.params.n)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["couzin", "30"]


def test_simcore_file_opens_with_xarray_and_accessor(small_couzin_run):
    ds = xr.open_dataset(small_couzin_run)
    assert ds.attrs["Conventions"] == "AMBER"
    assert ds.attrs["simcore_model"] == "couzin"
    record = json.loads(ds.attrs["run_parameters"])
    assert record["n"] == 30 and record["seed"] == 3 and record["steps"] == 60
    prov = json.loads(ds.attrs["provenance"])
    assert {"versions", "argv", "utc_start", "host"} <= set(prov)
    ds.close()
    with open_trajectory(small_couzin_run) as tr:
        assert "time" in tr.dims and "frame" not in tr.dims
        np.testing.assert_allclose(tr["time"].values, np.arange(7) * 1.0)
        assert tr.simcore.model == "couzin"
        assert tr.simcore.params.n == 30 and tr.simcore.params.r_o == 5.0
        assert tr.simcore.run_settings.seed == 3
        np.testing.assert_array_equal(tr.simcore.box, [0, 0, 0])
        # velocities are speed x unit heading
        speed = np.linalg.norm(tr["velocities"].values.astype(float), axis=-1)
        np.testing.assert_allclose(speed, 3.0, rtol=1e-6)


def test_reader_rejects_foreign_and_missing_files(tmp_path):
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("x", np.arange(3))}).to_netcdf(foreign)
    with pytest.raises(simcore.UserInputError, match="not a simcore trajectory"):
        read_attrs(foreign)
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(simcore.UserInputError, match="Cannot read"):
        open_trajectory(junk)
    with pytest.raises(simcore.UserInputError, match="does not exist"):
        open_trajectory(tmp_path / "missing.nc")


@pytest.mark.parametrize("fmt,other", [("netcdf4", "h5netcdf"), ("amber", "scipy")])
def test_an_engine_that_cannot_read_the_file_is_a_clear_error(tmp_path, monkeypatch, fmt, other):
    """xarray's scipy engine reads only NetCDF3 and its error advised installing netcdf4
    (a TypeError); each format names the engines that read it, and those work."""
    path = tmp_path / f"{fmt}.nc"
    simcore.run("couzin", preset="swarm", steps=20, write_every=10, overrides={"n": 10},
                format=fmt, out=path)
    wrong = {"netcdf4": ["scipy", "zarr", "no-such-engine"], "amber": ["h5netcdf", "zarr"]}[fmt]
    for engine in wrong:
        with pytest.raises(simcore.UserInputError, match=f"engine={engine!r}") as info:
            open_trajectory(path, engine=engine)
        assert "engine='netcdf4' (the default) or engine=" + repr(other) in str(info.value)
    with open_trajectory(path, engine="netcdf4") as ds:
        assert ds.sizes["time"] == 3
    if fmt == "amber":
        with open_trajectory(path, engine="scipy") as ds:
            assert ds.sizes["time"] == 3
    else:  # the right engine, not installed
        monkeypatch.setitem(sys.modules, "h5netcdf", None)
        with pytest.raises(simcore.UserInputError, match="needs the h5netcdf package"):
            open_trajectory(path, engine="h5netcdf")
