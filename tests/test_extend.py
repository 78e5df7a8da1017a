"""`simcore run --extend`: a finished run continued to more steps equals the longer run
made from the start, bit for bit; what cannot be extended is refused."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

import simcore
from simcore.config import resolve
from simcore.driver import run_model

from conftest import assert_same_file

CASES = {
    "couzin": dict(preset="swarm", seed=3, write_every=5, overrides={"n": 60}),
    "abp": dict(seed=3, write_every=50, overrides={"n": 300}),
    "linear": dict(seed=3, write_every=10, overrides={"n": 100}),
    "harddisc": dict(seed=3, overrides={"n": 400, "frame_dt": 0.5, "equilibrate": 1.0}),
}


def _length(model, steps):
    if model == "harddisc":
        return {"overrides": {**CASES[model]["overrides"], "t_end": steps * 0.5}}
    return {"steps": steps}


@pytest.mark.parametrize("model", list(CASES))
@pytest.mark.parametrize("fmt", ["netcdf4", "amber"])
def test_extend_equals_the_longer_run(tmp_path, model, fmt):
    short, long = (20, 50) if model == "harddisc" else (300, 700)
    if model == "couzin":
        short, long = 100, 250
    kw = dict(CASES[model], format=fmt)
    full = simcore.run(model, out=tmp_path / "full.nc", **{**kw, **_length(model, long)})
    out = tmp_path / "ext.nc"
    simcore.run(model, out=out, **{**kw, **_length(model, short)})
    before = netCDF4.Dataset(out).dimensions["frame"].size
    simcore.run(model, out=out, extend=True, **{**kw, **_length(model, long)})
    assert_same_file(full, out)
    with netCDF4.Dataset(out) as nc:
        assert nc.dimensions["frame"].size > before
        assert "extended_from" in nc.provenance
    # extending again to the same length is a no-op
    simcore.run(model, out=out, extend=True, **{**kw, **_length(model, long)})


def test_interrupted_extension_resumes_and_the_original_survives(tmp_path):
    kw = CASES["couzin"]
    out = tmp_path / "e.nc"
    simcore.run("couzin", out=out, steps=100, **kw)
    original = out.read_bytes()
    params, settings, preset = resolve("couzin", steps=300, **kw)
    with pytest.raises(KeyboardInterrupt):
        run_model("couzin", params, settings, out, preset=preset, extend=True, quiet=True,
                  stop_after_frames=40)
    assert out.read_bytes() == original  # replaced only when the extension is complete
    simcore.run("couzin", out=out, steps=300, resume=True, **kw)
    assert_same_file(simcore.run("couzin", out=tmp_path / "f.nc", steps=300, **kw), out)


def test_extend_refusals(tmp_path):
    kw = CASES["couzin"]
    out = tmp_path / "r.nc"
    with pytest.raises(simcore.UserInputError, match="does not exist"):
        simcore.run("couzin", out=out, steps=200, extend=True, **kw)
    simcore.run("couzin", out=out, steps=102, **kw)
    with pytest.raises(simcore.UserInputError, match="not a multiple of write_every"):
        simcore.run("couzin", out=out, steps=200, extend=True, **kw)
    simcore.run("couzin", out=out, steps=100, overwrite=True, **kw)
    with pytest.raises(simcore.UserInputError, match="differ from the file's: seed"):
        simcore.run("couzin", out=out, steps=200, extend=True, **dict(kw, seed=4))
    with pytest.raises(simcore.UserInputError, match="more steps"):
        simcore.run("couzin", out=out, steps=50, extend=True, **kw)
    with pytest.raises(simcore.UserInputError, match="--overwrite"):
        simcore.run("couzin", out=out, steps=200, extend=True, overwrite=True, **kw)


def test_final_state_is_stored_exactly_and_hidden_from_open_trajectory(tmp_path):
    from simcore.io.trajectory import read_state
    from simcore.models import couzin
    from simcore.rng import kernel_key

    kw = CASES["couzin"]
    out = simcore.run("couzin", out=tmp_path / "s.nc", steps=40, **kw)
    params, settings, _ = resolve("couzin", steps=40, **kw)
    state = couzin.init_state(params, settings.seed)
    couzin.advance(state, params, kernel_key(settings.seed), 0, 40)
    stored = read_state(out)
    for name in ("positions", "headings"):
        assert stored[name].dtype == np.float64
        assert stored[name].tobytes() == state[name].tobytes()
    with simcore.open_trajectory(out) as ds:
        assert not any(k.startswith("simcore_state_") for k in ds.variables)
