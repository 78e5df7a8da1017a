"""Issue 12 item 5: faults in the physics are caught early.

Strict, finite parameters; every engine stops an unstable run with an UnstableRunError
whose message names the failing chunk and gives advice that fits the parameters.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import simcore
from simcore._errors import UnstableRunError, UserInputError
from simcore.config import resolve
from simcore.models import active, couzin, harddisc, linear
from conftest import assert_one_paragraph, run_cli, run_cli_here


# ----------------------------------------------------------------------- strict parameters
@pytest.mark.parametrize("model,key", [("couzin", "n"), ("abp", "n"), ("harddisc", "n"),
                                       ("linear", "n"), ("couzin", "steps"),
                                       ("abp", "seed")])
@pytest.mark.parametrize("raw", ["true", "1.0", "2.5"])
def test_int_fields_refuse_bools_and_floats(model, key, raw):
    with pytest.raises(UserInputError, match=key):
        resolve(model, overrides=[f"{key}={raw}"])


@pytest.mark.parametrize("model,key", [("couzin", "dt"), ("abp", "dt"), ("abp", "v0"),
                                       ("harddisc", "T"), ("linear", "dt"),
                                       ("couzin", "speed")])
@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_float_fields_refuse_nan_and_inf(model, key, raw):
    with pytest.raises(UserInputError, match=f"{key}: Input should be a finite number"):
        resolve(model, overrides=[f"{key}={raw}"])


def test_int_values_still_fill_float_fields_and_bools_are_not_floats():
    params, _, _ = resolve("couzin", overrides=["dt=1", "n=20"])
    assert params.dt == 1.0 and isinstance(params.dt, float) and params.n == 20
    with pytest.raises(UserInputError, match="dt"):
        resolve("couzin", overrides=["dt=true"])
    with pytest.raises(UserInputError, match="write_force"):
        resolve("abp", overrides=["write_force=1"])


def test_nan_inside_the_linear_matrices_is_refused():
    with pytest.raises(UserInputError, match="finite"):
        resolve("linear", overrides={"B": [[float("nan"), 0.0], [0.0, 1.0]]})
    with pytest.raises(UserInputError, match="beyond 1e\\+100"):
        resolve("linear", overrides={"D": [[1e300, 0.0], [0.0, 1.0]]})


def test_cli_set_true_for_an_int_exits_2(tmp_path, capsys):
    proc = run_cli_here(capsys, "run", "couzin", "--set", "n=true", "--steps", "10", "-o",
                        tmp_path / "x.nc", check_rc=2)
    assert_one_paragraph(proc, "n: Input should be a valid integer")


# ----------------------------------------------------------------------- couzin
def test_couzin_huge_dt_is_an_unstable_run_before_the_chunk(tmp_path):
    # the chunk is the kernel call's: in open space the run's first frame interval is one
    # call (Engine.cuts_anywhere), and the run-away is foreseen before its first step
    with pytest.raises(UnstableRunError, match=r"before step 1 \(in the chunk of steps "
                       r"0\.\.10\).*dt <= 0\.333") as info:
        simcore.run("couzin", steps=30, write_every=10, overrides={"n": 30, "dt": 1e300},
                    out=tmp_path / "c.nc")
    assert info.value.first_step == 0 and info.value.last_step == 1


def test_couzin_dt_inf_and_cli_exit_2(tmp_path, capsys):
    proc = run_cli_here(capsys, "run", "couzin", "--set", "dt=inf", "--steps", "10", "-o",
                        tmp_path / "x.nc", check_rc=2)
    assert_one_paragraph(proc, "finite")
    proc = run_cli("run", "couzin", "--set", "dt=1e300", "--set", "n=20", "--steps", "20",
                   "--write-every", "10", "-o", tmp_path / "y.nc", "--quiet", check_rc=2)
    assert_one_paragraph(proc, "run away")
    assert not (tmp_path / "y.nc").exists()


def test_couzin_runaway_step_is_exact():
    p = couzin.Params(n=5, dt=1e14, speed=1.0)  # 1e14 per step: 1e15 is passed in step ~10
    state = couzin.init_state(p, 0)
    with pytest.raises(UnstableRunError) as info:
        couzin.advance(state, p, 1, 0, 50)
    far = np.abs(state["positions"]).max()
    expected = int((couzin.MAX_COORDINATE - far) // 1e14) + 1
    assert info.value.last_step == expected and f"before step {expected} " in str(info.value)


def test_couzin_non_finite_headings_are_caught(monkeypatch):
    p = couzin.Params(n=20)
    state = couzin.init_state(p, 0)

    def poisoned(pos, head, *args):
        head[3, 0] = np.nan

    monkeypatch.setattr(couzin, "run_steps_for", lambda parallel: poisoned)
    with pytest.raises(UnstableRunError, match=r"before step 17 \(in the chunk of steps 7\.\.17\)"):
        couzin.advance(state, p, 1, 7, 10)


@pytest.mark.parametrize("field", ["positions", "headings"])
def test_couzin_state_edited_to_nan_is_refused_before_the_kernel(field):
    p = couzin.Params(n=20)
    state = couzin.init_state(p, 0)
    state[field][4, 1] = np.nan
    with pytest.raises(UserInputError, match="non-finite positions or headings"):
        couzin.advance(state, p, 1, 0, 10)
    state[field][4, 1] = 0.5  # a finite state advances
    couzin.advance(state, p, 1, 0, 10)
    assert np.isfinite(state["positions"]).all()


def test_couzin_advice_depends_on_the_step_length():
    big = couzin.stability_advice(couzin.Params(dt=5.0, speed=2.0, r_r=1.0))
    assert "dt <= 0.5" in big and "10" in big
    small = couzin.stability_advice(couzin.Params(dt=0.1, speed=2.0, r_r=1.0))
    assert "not the cause" in small and "dt <=" not in small


# ----------------------------------------------------------------------- abp
def test_abp_advice_fits_the_potential_and_the_time_step():
    p, _, _ = resolve("abp", preset="mips", overrides={"dt": 5e-3})
    too_big = active.stability_advice(p)
    assert "WCA" in too_big and "dt = 0.005 is too large" in too_big and "dt <= 0.0001" in too_big
    p_ok, _, _ = resolve("abp", preset="mips")  # dt = 1e-4 already
    already = active.stability_advice(p_ok)
    assert "already" in already and "dt <= 0.0001 (a step" not in already
    assert "1e-05" in already
    soft, _, _ = resolve("abp", preset="boffi2023", overrides={"dt": 5.0})
    soft_advice = active.stability_advice(soft)
    assert "soft discs" in soft_advice and "WCA" not in soft_advice
    assert "dt <= 0.01" in soft_advice
    free, _, _ = resolve("abp", preset="trapped_abp", overrides={"kappa": 1e6, "dt": 1.0})
    assert "trap kappa = 1e+06" in active.stability_advice(free)
    assert active.suggested_dt(free) < 1e-6
    uniform = active.Params(init="uniform", dt=1e-6)
    assert "init = 'lattice'" in active.stability_advice(uniform)


def test_abp_too_large_dt_is_an_unstable_run_with_the_failing_step(tmp_path):
    with pytest.raises(UnstableRunError) as info:
        simcore.run("abp", preset="mips", steps=400, write_every=200,
                    overrides={"n": 200, "dt": 5e-3}, out=tmp_path / "a.nc")
    msg = str(info.value)
    first, last = info.value.first_step, info.value.last_step
    assert 0 <= first < last <= 200
    # the kernel call it failed in: within the first frame interval (which the driver,
    # not having timed one yet, advances in pieces from one step up)
    chunk = re.search(rf"before step {last} \(in the chunk of steps (\d+)\.\.(\d+)\)", msg)
    assert chunk and 0 <= int(chunk[1]) <= first < last <= int(chunk[2]) <= 200, msg


def test_abp_non_finite_state_is_caught():
    p = active.Params(n=16, phi=0.1, potential="none")
    state = active.init_state(p, 0)
    state["theta"][2] = np.inf
    with pytest.raises(UnstableRunError, match="no longer finite"):
        active.advance(state, p, 1, 0, 3)


# ----------------------------------------------------------------------- harddisc
@pytest.mark.parametrize("override,fragment", [
    ("T=1e300", "outside 1e-100..1e100"),
    ("T=1e-300", "outside 1e-100..1e100"),
    ("T=1e40", "would take about"),
    ("frame_dt=1e12", "would take about"),
])
def test_harddisc_absurd_parameters_are_refused_at_validation(override, fragment):
    with pytest.raises(UserInputError, match=fragment):
        resolve("harddisc", overrides=[override, "n=200"])


def test_harddisc_huge_temperature_exits_2_at_once(tmp_path):
    proc = run_cli("run", "harddisc", "--set", "T=1e300", "--set", "n=100", "-o",
                   tmp_path / "h.nc", check_rc=2, timeout=60)
    assert_one_paragraph(proc, "T = 1e+300 is outside 1e-100..1e100")
    assert not (tmp_path / "h.nc.part").exists()


def test_harddisc_presets_stay_well_below_the_event_bound():
    for name in harddisc.PRESETS:
        p, _, _ = resolve("harddisc", preset=name)
        assert harddisc.estimated_events_per_frame(p) < 1e-3 * harddisc.MAX_EVENTS_PER_FRAME


def test_harddisc_non_finite_state_is_caught(monkeypatch):
    p = harddisc.Params(n=50, phi=0.05, t_end=3.0)
    state = harddisc.init_state(p, 0)

    def poisoned(state, *args):
        state["velocities"][0, 0] = np.nan

    monkeypatch.setattr(harddisc, "_run", poisoned)
    with pytest.raises(UnstableRunError, match=r"before step 5 \(frame interval 4\.\.5"):
        harddisc.advance(state, p, 1, 4, 2)


# ----------------------------------------------------------------------- linear
def test_linear_overflowing_transition_is_an_unstable_run(tmp_path):
    with pytest.raises(UnstableRunError, match=r"from step 0.*dt <= 68"):
        simcore.run("linear", steps=20, write_every=10, overrides={"dt": 1000.0, "n": 10},
                    out=tmp_path / "l.nc")


def test_an_unstable_run_never_replaces_an_existing_unstable_file(tmp_path):
    """OUT.unstable.nc from before (or any file of that name) is kept: the frames of a
    second unstable run go to OUT.unstable.2.nc, and the message names that file."""
    kept = tmp_path / "l.unstable.nc"
    kept.write_bytes(b"the user's data")
    for expected in ("l.unstable.2.nc", "l.unstable.3.nc"):
        with pytest.raises(UnstableRunError, match=re.escape(expected)):
            simcore.run("linear", steps=20, write_every=10,
                        overrides={"dt": 1000.0, "n": 10}, out=tmp_path / "l.nc")
        with simcore.open_trajectory(tmp_path / expected) as ds:
            assert ds.sizes["time"] == 1
    assert kept.read_bytes() == b"the user's data"


def test_linear_runaway_state_is_caught():
    p = linear.Params(n=4, init="zero")
    state = linear.init_state(p, 0)
    state["x"][1, 0] = 1e31  # a state no stable B could reach
    with pytest.raises(UnstableRunError, match=r"before step 13 \(in the chunk of steps 3\.\.13\)"):
        linear.advance(state, p, 1, 3, 10)


def test_linear_advice_fits_the_integrator():
    euler = linear.Params(integrator="euler", dt=0.01)
    assert "integrator = 'exact'" in linear.stability_advice(euler)
    exact = linear.Params(dt=0.01, D=[[1e90, 0.0], [0.0, 1e90]])
    assert "Rescale" in linear.stability_advice(exact)


@pytest.mark.parametrize("override,fragment", [
    (["dt=10", "potential='none'"], "more than half the periodic box"),
    (["v0=1e300", "potential='none'"], "v0 = 1e+300 outside 1e-100..1e100"),
    (["D_t=1e300"], "D_t = 1e+300 outside"),
    (["sigma=1e-300"], "sigma = 1e-300 outside"),
    (["phi=1e-300"], "particle radii wide"),
])
def test_abp_absurd_scales_are_refused_at_validation(override, fragment):
    with pytest.raises(UserInputError, match=fragment.replace("+", r"\+")):
        resolve("abp", overrides=override + ["n=64"])


def test_abp_presets_pass_the_scale_checks():
    for name in active.PRESETS:
        resolve("abp", preset=name)


@pytest.mark.parametrize("model,override,fragment", [
    ("couzin", ["r_o=1e300", "r_a=1e300"], "r_a = 1e+300 outside 1e-100..1e100"),
    ("couzin", ["boundary='periodic'", "box=1e-300"], "box = 1e-300 outside"),
    ("couzin", ["boundary='periodic'", "box=1e50"], "attraction radii wide"),
    ("couzin", ["boundary='reflecting'", "box=1e50"], "attraction radii wide"),
    ("harddisc", ["sigma=1e300"], "sigma = 1e+300 outside"),
    ("harddisc", ["phi=1e-300"], "diameters wide"),
])
def test_absurd_lengths_are_refused_at_validation(model, override, fragment):
    with pytest.raises(UserInputError, match=fragment.replace("+", r"\+")):
        resolve(model, overrides=override + ["n=20"])


def test_presets_pass_the_scale_checks():
    for model in ("couzin", "harddisc", "linear"):
        for name in simcore.presets(model):
            resolve(model, preset=name)
