"""The engine contract, checked for every registered engine: the built-in ones and the
test engine of tests/plugins (registered through the ``simcore.engines`` entry point, as a
third-party package would be; no simcore file names it).

Each engine is run at its record's ``quick_run`` size: presets validate; ``frame`` has the
declared variables and shapes and ``state_from_frame`` inverts it; ``simcore run``,
``analyze``, ``plot`` (figure and GIF) and ``info`` work; an interrupted run resumes to the
same bits; 1 and 2 threads give the same bits; a two-point sweep runs and combines.
"""

from __future__ import annotations

import inspect
import json

import netCDF4
import numpy as np
import pytest

import simcore
from simcore.config import resolve
from simcore.driver import run_model
from simcore.models import engine_names, get_engine

from conftest import assert_same_file, run_cli

ENGINES = engine_names()


def cli(*args) -> str:
    """``simcore ARGS`` in this process (the same code as the command, without a new
    interpreter per call); asserts exit 0 and returns stdout."""
    import contextlib
    import io

    from simcore.cli import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([str(a) for a in args])
    assert code == 0, (args, stdout.getvalue())
    return stdout.getvalue()


def _quick(name: str, **extra) -> dict:
    """``simcore.run`` keyword arguments for the engine's quick run."""
    quick = dict(get_engine(name).quick_run)
    kw = {k: quick.pop(k) for k in ("steps", "write_every") if k in quick}
    return dict(kw, seed=5, overrides={**quick, **extra.pop("overrides", {})}, **extra)


def _set_args(name: str) -> list[str]:
    args = []
    for key, value in get_engine(name).quick_run.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def test_the_test_engine_is_registered_through_its_entry_point(tmp_path):
    from importlib.metadata import entry_points

    assert "walkers" in ENGINES
    assert [ep.value for ep in entry_points(group="simcore.engines") if ep.name == "walkers"] \
        == ["simcore_walkers:ENGINE"]
    # a fresh `simcore` process finds it too (PYTHONPATH holds tests/plugins, see conftest)
    assert "walkers:" in run_cli("presets", check_rc=0).stdout
    run_cli("run", "walkers", "--steps", "20", "--quiet", "-o", tmp_path / "w.nc", check_rc=0)


@pytest.mark.parametrize("name", ENGINES)
def test_record_and_presets(name):
    engine = get_engine(name)
    assert engine.name == name and engine.ndim in (1, 2, 3)
    validated = simcore.presets(name)
    assert set(validated) == set(engine.presets) and set(engine.preset_docs) <= set(validated)
    for params in validated.values():
        assert isinstance(params, engine.Params)
    assert engine.default_preset is None or engine.default_preset in engine.presets
    for what in ("analysis", "figure", "animation"):
        assert callable(engine.load(what)), what
    for option in engine.analysis_options:
        assert option.name in inspect.signature(engine.load("analysis")).parameters


@pytest.mark.parametrize("name", ENGINES)
def test_frame_has_the_declared_variables_and_state_from_frame_inverts_it(name):
    engine = get_engine(name)
    params, settings, _ = resolve(name, **_quick(name))
    state = engine.init_state(params, 3)
    frame = engine.frame(state, params)
    n = params.n
    assert frame["coordinates"].shape == (n, 3) and frame["cell_lengths"].shape == (3,)
    assert ("velocities" in frame) == engine.has_velocities
    if engine.has_velocities:
        assert frame["velocities"].shape == (n, 3)
    sizes = {"atom": n, "spatial": 3}
    extras = engine.extra_variables(params)
    assert set(frame) == {"coordinates", "cell_lengths", *extras} | (
        {"velocities"} if engine.has_velocities else set())
    for var, (dims, units, long_name, *own) in extras.items():
        assert isinstance(units, str) and long_name, var
        dim_sizes = {**sizes, **(own[0] if own else {})}  # engine-specific dimensions
        assert np.shape(frame[var]) == tuple(dim_sizes[d] for d in dims), var
    again = engine.frame(engine.state_from_frame(
        {k: np.asarray(v, dtype=np.float64) for k, v in frame.items()}, params), params)
    np.testing.assert_array_equal(again["coordinates"], frame["coordinates"])


@pytest.mark.parametrize("name", ENGINES)
def test_run_analyze_plot_animate_info_on_the_command_line(tmp_path, name):
    out = tmp_path / f"{name}.nc"
    cli("run", name, *_set_args(name), "--seed", "2", "--quiet", "-o", out)
    assert f"model {name}" in cli("analyze", out, "-o", tmp_path / "diag.nc")
    with simcore.open_trajectory(out) as ds:
        assert ds.simcore.model == name and ds.sizes["atom"] == resolve(
            name, **_quick(name))[0].n
    cli("plot", out)
    cli("plot", out, "--animate")
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".gif").stat().st_size > 0
    assert f"model:      {name}" in cli("info", out)


@pytest.mark.parametrize("name", ENGINES)
def test_interrupted_run_resumes_to_the_same_bits(tmp_path, name):
    kw = _quick(name, overrides={"checkpoint_every": 2})
    full = simcore.run(name, out=tmp_path / "full.nc", quiet=True, **kw)
    params, settings, preset = resolve(name, **kw)
    cut = tmp_path / "cut.nc"
    with pytest.raises(KeyboardInterrupt):
        run_model(name, params, settings, cut, preset=preset, quiet=True, stop_after_frames=5)
    simcore.run(name, out=cut, resume=True, quiet=True, **kw)
    assert_same_file(full, cut)
    other = simcore.run(name, out=tmp_path / "other.nc", quiet=True, **dict(kw, seed=6))
    with netCDF4.Dataset(full) as x, netCDF4.Dataset(other) as y:
        assert not np.array_equal(x["coordinates"][-1], y["coordinates"][-1])


@pytest.mark.parametrize("name", ENGINES)
def test_one_and_two_threads_give_the_same_bits(tmp_path, name):
    args = ["run", name, *_set_args(name), "--seed", "4", "--quiet"]
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    try:
        cli(*args, "--threads", "1", "-o", tmp_path / "one.nc")
        cli(*args, "--threads", "2", "-o", tmp_path / "two.nc")
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert_same_file(tmp_path / "one.nc", tmp_path / "two.nc")


@pytest.mark.parametrize("name", ENGINES)
def test_a_two_point_sweep_runs_and_combines(tmp_path, name):
    from simcore.sweep import analyze_sweep

    kw = _quick(name)
    lines = [f'model = "{name}"', 'out = "out"', "seed = 1", "seeds_per_point = 2"]
    lines += [f"{k} = {json.dumps(kw[k])}" for k in ("steps", "write_every") if k in kw]
    lines += ["[params]"] + [f"{k} = {json.dumps(v)}" for k, v in kw["overrides"].items()]
    lines += ["[grid]", 'precision = ["float32", "float64"]']  # a run setting every engine has
    (tmp_path / "sweep.toml").write_text("\n".join(lines) + "\n")
    folder = simcore.sweep(tmp_path / "sweep.toml", backend="serial", quiet=True)
    combined = simcore.open_sweep(folder)
    assert combined.sizes["replica"] == 2 and combined.sizes["precision"] == 2
    diagnostics = analyze_sweep(folder)
    assert diagnostics.sizes["replica"] == 2 and diagnostics.sizes["precision"] == 2
    assert diagnostics.attrs["simcore_model"] == name
    assert "runs:       4 (4 done)" in cli("info", folder)
    cli("plot", folder)
    assert (folder / "sweep.png").stat().st_size > 0
