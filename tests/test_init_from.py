"""`init_from = "FILE[:FRAME]"`: a new run starts from a stored frame, with its own
parameters and seed; the state carries over (exactly from a finished file's last frame)."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

import simcore

from conftest import run_cli

CASES = {
    "couzin": dict(preset="swarm", steps=100, write_every=10, overrides={"n": 60}),
    "abp": dict(steps=300, write_every=100, overrides={"n": 300}),
    "linear": dict(steps=200, write_every=50, overrides={"n": 100}),
    "harddisc": dict(overrides={"n": 300, "t_end": 4.0, "frame_dt": 1.0, "expansion": 1.0}),
}


def _frame(path, k):
    with netCDF4.Dataset(path) as ds:
        return {name: np.asarray(v[k]) for name, v in ds.variables.items()
                if v.dimensions[:1] == ("frame",)}


@pytest.mark.parametrize("model", list(CASES))
def test_last_frame_of_a_finished_run_carries_over_exactly(tmp_path, model):
    kw = CASES[model]
    a = simcore.run(model, out=tmp_path / "a.nc", seed=1, **kw)
    b = simcore.run(model, out=tmp_path / "b.nc", seed=2,
                    **{**kw, "overrides": {**kw["overrides"], "init_from": str(a)}})
    last, first = _frame(a, -1), _frame(b, 0)
    same = [k for k in last if k not in ("time", "frame")]
    assert "coordinates" in same
    for name in same:  # every per-frame variable: positions, velocities or drift, extras
        np.testing.assert_array_equal(first[name], last[name], err_msg=name)
    with simcore.open_trajectory(b) as ds:
        assert ds.simcore.run_settings.init_from == str(a)
        assert not np.array_equal(ds["coordinates"].values[-1], first["coordinates"])


@pytest.mark.parametrize("model", ["couzin", "abp", "linear"])
def test_any_frame_with_new_parameters_continues_the_state(tmp_path, model):
    """From frame 1 (not the last) with a changed parameter: frame 0 of the new run is
    the stored frame to float32 precision (positions; the propulsion or heading state)."""
    kw = CASES[model]
    a = simcore.run(model, out=tmp_path / "a.nc", seed=1, **kw)
    change = {"couzin": {"r_o": 6.0}, "abp": {"v0": 12.0}, "linear": {"dt": 0.005}}[model]
    proc = run_cli("run", model, *(["--preset", kw["preset"]] if "preset" in kw else []),
                   "--steps", kw["steps"], "--write-every", kw["write_every"],
                   *[f"--set={k}={v}" for k, v in {**kw["overrides"], **change}.items()],
                   "--init-from", f"{a}:1", "--quiet", "-o", tmp_path / "b.nc", check_rc=0)
    assert proc.returncode == 0
    src, first = _frame(a, 1), _frame(tmp_path / "b.nc", 0)
    np.testing.assert_allclose(first["coordinates"], src["coordinates"], rtol=0, atol=1e-5)
    extra = {"couzin": "velocities", "abp": "theta", "linear": "x"}[model]
    if model == "couzin":  # same speed: headings equal to float32 rounding
        np.testing.assert_allclose(first[extra], src[extra], atol=1e-5)
    else:
        np.testing.assert_allclose(first[extra], src[extra], rtol=1e-6, atol=1e-6)


def test_init_from_refusals(tmp_path):
    a = simcore.run("couzin", out=tmp_path / "a.nc", seed=1, **CASES["couzin"])
    kw = CASES["abp"]
    with pytest.raises(simcore.UserInputError, match="holds a 'couzin' run"):
        simcore.run("abp", out=tmp_path / "x.nc", **{**kw, "overrides": {
            **kw["overrides"], "init_from": str(a)}})
    kw = CASES["couzin"]
    with pytest.raises(simcore.UserInputError, match="n = 60 particles"):
        simcore.run("couzin", out=tmp_path / "y.nc", **{**kw, "overrides": {
            "n": 61, "init_from": str(a)}})
    with pytest.raises(simcore.UserInputError, match="frame 99 does not exist"):
        simcore.run("couzin", out=tmp_path / "z.nc", **{**kw, "overrides": {
            **kw["overrides"], "init_from": f"{a}:99"}})
    with pytest.raises(simcore.UserInputError, match="does not exist"):
        simcore.run("couzin", out=tmp_path / "w.nc", **{**kw, "overrides": {
            **kw["overrides"], "init_from": str(tmp_path / "missing.nc")}})


def test_overlapping_hard_discs_are_refused(tmp_path):
    kw = CASES["harddisc"]
    a = simcore.run("harddisc", out=tmp_path / "a.nc", seed=1, **kw)
    with netCDF4.Dataset(a, "a") as ds:  # put disc 1 on top of disc 0 in frame 2
        xy = ds["coordinates"][2]
        xy[1] = xy[0] + np.array([0.3, 0.0, 0.0], dtype=xy.dtype)
        ds["coordinates"][2] = xy
    with pytest.raises(simcore.UserInputError, match="overlap"):
        simcore.run("harddisc", out=tmp_path / "b.nc", **{**kw, "overrides": {
            **kw["overrides"], "init_from": f"{a}:2"}})
