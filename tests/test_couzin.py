"""Couzin engine: kernel rules on hand-built cases, cell lists vs all pairs, the anchor's
noise-free trajectories, and the four Couzin 2002 regimes."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from simcore.models import couzin
from simcore.rng import kernel_key

DATA = Path(__file__).parent / "data"


def step_once(params, pos, head, all_pairs=False, step=0, seed=0):
    state = {"positions": np.array(pos, dtype=float), "headings": np.array(head, dtype=float)}
    couzin.advance(state, params, kernel_key(seed), step, 1, all_pairs=all_pairs)
    return state["positions"], state["headings"]


def quiet(**kw):
    """Noise-free parameters with an unlimited turn, so one step shows the desired direction."""
    base = dict(n=2, noise=0.0, turning_rate=math.pi / 0.1 * 1.0000001, r_r=1.0, r_o=3.0, r_a=6.0)
    base.update(kw)
    return couzin.Params(**base)


def test_repulsion_overrides_and_sees_behind():
    # B sits 0.5 behind A (inside r_r and inside A's blind cone): A flees forward anyway
    p = quiet()
    _, head = step_once(p, [[0, 0, 0], [-0.5, 0, 0]], [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_allclose(head[0], [1, 0, 0], atol=1e-12)
    _, head = step_once(p, [[0, 0, 0], [0.5, 0, 0]], [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_allclose(head[0], [-1, 0, 0], atol=1e-12)


def test_blind_cone_hides_orientation_neighbour_behind():
    pos, head = [[0, 0, 0], [-2.0, 0, 0]], [[1, 0, 0], [0, 1, 0]]  # B in A's ZOO, behind
    _, h270 = step_once(quiet(field_of_view=270.0), pos, head)
    np.testing.assert_allclose(h270[0], [1, 0, 0], atol=1e-12)  # unseen: keep heading
    _, h360 = step_once(quiet(field_of_view=360.0), pos, head)
    np.testing.assert_allclose(h360[0], np.array([1, 1, 0]) / math.sqrt(2), atol=1e-12)


def test_orientation_and_attraction_are_normalised_then_averaged():
    # A heads +x; B in the ZOO ahead-left heading +y; C in the ZOA straight ahead
    pos = [[0, 0, 0], [1.5, 1.5, 0], [5.0, 0, 0]]
    head = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    _, h = step_once(quiet(n=3), pos, head)
    d_o = np.array([1, 1, 0]) / math.sqrt(2)  # self + B, normalised
    d_a = np.array([1, 0, 0])
    want = 0.5 * (d_o + d_a)
    np.testing.assert_allclose(h[0], want / np.linalg.norm(want), atol=1e-12)


def test_turn_is_capped_rotation_and_speed_constant():
    p = couzin.Params(**dict(couzin.PRESETS["swarm"], noise=0.0, n=60))
    state = couzin.init_state(p, 1)
    cap = p.turning_rate * p.dt
    for k in range(20):
        old_pos, old_head = state["positions"].copy(), state["headings"].copy()
        couzin.advance(state, p, kernel_key(1), k, 1)
        cosang = np.clip((old_head * state["headings"]).sum(1), -1, 1)
        assert np.all(np.arccos(cosang) <= cap + 1e-9)
        np.testing.assert_allclose(np.linalg.norm(state["headings"], axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(state["positions"] - old_pos, axis=1),
                                   p.speed * p.dt, rtol=1e-12)


def test_noise_is_a_wrapped_gaussian_of_the_given_width():
    # isolated agents (no neighbours) keep their heading up to the noise: angle ~ Rayleigh(σ)
    sigma = 0.05
    p = couzin.Params(n=4000, noise=sigma, r_r=0.001, r_o=0.001, r_a=0.001,
                      turning_rate=10.0)
    g = np.random.default_rng(0)
    pos = g.random((4000, 3)) * 1e4
    head = np.tile([0.0, 0.0, 1.0], (4000, 1))
    _, new = step_once(p, pos, head)
    angle = np.arccos(np.clip(new[:, 2], -1, 1))
    # E[angle²] = 2σ² for a 2D tangent Gaussian; the sample mean has s.d. 2σ²/√n
    m2 = np.mean(angle ** 2)
    assert abs(m2 - 2 * sigma ** 2) < 5 * 2 * sigma ** 2 / math.sqrt(4000)


@pytest.mark.parametrize("rule,boundary,box", [
    ("couzin2002", "open", 0.0), ("couzin2002", "periodic", 30.0),
    ("couzin2002", "reflecting", 30.0), ("dewi", "periodic", 30.0)])
def test_cell_list_kernel_equals_all_pairs(boundary, box, rule):
    g = np.random.default_rng(5)
    n = 500
    kw = dict(n=n, r_r=1.0, r_o=3.0, r_a=7.0, noise=0.1, boundary=boundary, box=box, rule=rule)
    if rule == "dewi":
        kw["orientation_weight"] = 0.5
    p = couzin.Params(**kw)
    if boundary == "open":
        pos = g.normal(0, 6, (n, 3))
    else:
        pos = g.random((n, 3)) * box
    head = g.standard_normal((n, 3))
    head /= np.linalg.norm(head, axis=1, keepdims=True)
    pc, hc = step_once(p, pos, head, step=3)
    pa, ha = step_once(p, pos, head, all_pairs=True, step=3)
    np.testing.assert_allclose(hc, ha, atol=1e-12, rtol=0)
    np.testing.assert_allclose(pc, pa, atol=1e-12, rtol=0)


@pytest.mark.parametrize("case", ["random", "torus"])
def test_dewi_rule_reproduces_the_anchor_without_noise(case):
    ref = np.load(DATA / "dewi_trajectory_reference.npz")
    kw = json.loads(str(ref[f"{case}_kwargs"]))
    p = couzin.Params(
        rule="dewi", n=kw["n_fish"], box=kw["box_size"], boundary="periodic", speed=kw["speed"],
        r_r=kw["r_repulsion"], r_o=kw["r_orientation"], r_a=kw["r_attraction"],
        turning_rate=kw["max_turn"] / kw["dt"], noise=0.0, dt=kw["dt"],
        field_of_view=360.0 - 2 * kw["blind_angle"], orientation_weight=kw["orientation_weight"],
        init="mill" if kw.get("torus_init") else "random", init_size=kw.get("torus_radius"),
    )
    state = couzin.init_state(p, kw["seed"])
    want_pos, want_vel = ref[f"{case}_positions"], ref[f"{case}_velocities"]
    np.testing.assert_allclose(state["positions"], want_pos[0], atol=1e-12)
    for k in range(1, kw["steps"] + 1):
        couzin.advance(state, p, kernel_key(0), k - 1, 1)
        np.testing.assert_allclose(state["headings"] * p.speed, want_vel[k], atol=1e-9, rtol=0)
        np.testing.assert_allclose(state["positions"], want_pos[k], atol=1e-9, rtol=0)


def test_periodic_box_warns_when_attraction_exceeds_half_box():
    p = couzin.Params(**{k: v for k, v in couzin.PRESETS["dewi_swarm"].items()
                         if k not in ("steps", "seed")})
    assert any("exceeds half the periodic box" in w for w in couzin.warnings(p))


def test_reflecting_walls_keep_agents_inside():
    p = couzin.Params(n=200, boundary="reflecting", box=8.0, r_o=2.0, r_a=4.0)
    state = couzin.init_state(p, 2)
    couzin.advance(state, p, kernel_key(2), 0, 300)
    assert np.all(state["positions"] >= 0) and np.all(state["positions"] <= 8.0)


# Couzin 2002 regimes (N = 100): P and M averaged over the last third of a settled run.
REGIMES = {
    "swarm": lambda P, M: P < 0.3 and M < 0.3,
    "torus": lambda P, M: M > 0.5 and P < 0.3,
    "dynamic_parallel": lambda P, M: P > 0.6,
    "highly_parallel": lambda P, M: P > 0.9,
}


@pytest.mark.parametrize("preset,precision", [(p, "float64") for p in REGIMES]
                         + [("torus", "float32"), ("highly_parallel", "float32")])
def test_couzin2002_presets_land_in_their_regime(tmp_path, preset, precision):
    """Each preset's phase (float64, and the float32 pair loop on the two ordered ones)."""
    import simcore
    from simcore.analysis.schooling import schooling_indices_from_dataset

    out = simcore.run("couzin", preset=preset, steps=3000, seed=1, write_every=20,
                      overrides={"kernel_precision": precision}, out=tmp_path / f"{preset}.nc")
    with simcore.open_trajectory(out) as ds:
        res = schooling_indices_from_dataset(ds)
    t = res.sizes["time"]
    tail = res.isel(time=slice(t - t // 3, t))
    P, M = float(tail["polarization"].mean()), float(tail["milling"].mean())
    assert REGIMES[preset](P, M), (preset, P, M)


# ---------------------------------------------------------------- kernel_precision="float32"
def _random_school(rule, boundary, box, n=500, seed=5, **extra):
    g = np.random.default_rng(seed)
    kw = dict(n=n, r_r=1.0, r_o=3.0, r_a=7.0, noise=0.1, boundary=boundary, box=box, rule=rule)
    kw.update(extra)
    pos = g.normal(0, 6, (n, 3)) if boundary == "open" else g.random((n, 3)) * box
    head = g.standard_normal((n, 3))
    head /= np.linalg.norm(head, axis=1, keepdims=True)
    return kw, pos, head


@pytest.mark.parametrize("rule,boundary,box,n,fov", [
    ("couzin2002", "open", 0.0, 500, 270.0), ("couzin2002", "open", 0.0, 3000, 270.0),
    ("couzin2002", "reflecting", 30.0, 500, 270.0), ("couzin2002", "periodic", 30.0, 500, 270.0),
    ("couzin2002", "periodic", 40.0, 3000, 270.0), ("couzin2002", "periodic", 12.0, 500, 270.0),
    ("dewi", "periodic", 30.0, 500, 270.0), ("dewi", "periodic", 12.0, 500, 270.0),
    ("dewi", "periodic", 30.0, 500, 360.0)])
def test_float32_kernel_agrees_with_float64_to_single_precision(rule, boundary, box, n, fov):
    # Zone sums of ~10-100 unit vectors in float32 carry ~1e-6 relative error; a pair can
    # change zone only if its distance lies within ~1e-6 of a zone radius, which a random
    # configuration makes rare (expected < 1 agent of 500). A wrong sign, a lost shift or
    # a mis-packed cell key moves most headings by O(0.1-1). The float32 plan is all pairs
    # for 500 agents, cells for 3000 (in open space and in a periodic box of side 40;
    # each against float64's cells, or its one cell in the box of side 12). A field of
    # view of 360 degrees: no blind zone (the dewi rule's test then always passes).
    kw, pos, head = _random_school(rule, boundary, box, n=n, field_of_view=fov)
    if box != 12.0:
        plan = couzin.cell_plan(couzin.Params(**kw, kernel_precision="float32"), pos)
        assert (plan[3][0] > 0) == (n > 500)
    _, h64 = step_once(couzin.Params(**kw), pos, head, step=3)
    _, h32 = step_once(couzin.Params(**kw, kernel_precision="float32"), pos, head, step=3)
    err = np.linalg.norm(h32 - h64, axis=1)
    assert np.median(err) < 1e-5, np.median(err)
    assert np.mean(err > 1e-4) <= 0.01, np.sort(err)[-10:]
    assert not np.array_equal(h32, h64)  # the float32 loop did run


@pytest.mark.slow
def test_float32_kernel_agrees_with_float64_with_the_other_hosts_zone_tests(tmp_path):
    # The float32 pair loop combines its zone tests as floats on CPUs without AVX-512 and as
    # booleans on those with it (rules._float_masks): this host's tests cover one; the
    # same tests in a fresh process (its own Numba cache) cover the other.
    import subprocess

    from simcore.models.couzin import rules

    other = "bool" if rules._FLOAT_MASKS else "float"
    env = dict(os.environ, SIMCORE_TEST_COUZIN_MASKS=other, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
         "float32_kernel_agrees_with_float64_to_single or float32_threaded_and_serial"],
        env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout, out.stdout[-500:]


def test_float32_kernel_is_translation_invariant_far_from_the_origin():
    # Open space: the float32 copies are taken relative to the group's centre, so a school
    # 1e6 lengths away (float32 spacing there: 0.06) decides as it does at the origin.
    kw, pos, head = _random_school("couzin2002", "open", 0.0, noise=0.0)
    p = couzin.Params(**kw, kernel_precision="float32")
    _, near = step_once(p, pos, head)
    _, far = step_once(p, pos + 1e6, head)
    np.testing.assert_allclose(far, near, atol=1e-5, rtol=0)


def test_float32_threaded_and_serial_kernels_give_the_same_bits():
    kw, pos, head = _random_school("dewi", "periodic", 30.0)
    p = couzin.Params(**kw, kernel_precision="float32")
    out = []
    for parallel in (False, True):
        state = {"positions": pos.copy(), "headings": head.copy()}
        couzin.advance(state, p, kernel_key(0), 0, 5, parallel=parallel)
        out.append(state["headings"])
    assert np.array_equal(out[0], out[1])


def test_only_the_float32_pair_loop_asks_for_512_bit_vectors():
    # The float64 default keeps LLVM's own vector width (its seeded bits depend on it).
    from numba import njit

    from simcore.models.couzin.rules import _wide_vectors_for

    @njit
    def marked(copies):
        _wide_vectors_for(copies)
        return copies[0]

    for dtype in (np.float32, np.float64):
        marked(np.zeros(1, dtype))
    ir = {str(sig): text for sig, text in marked.inspect_llvm().items()}
    assert sorted(ir) == ["(Array(float32, 1, 'C', False, aligned=True),)",
                          "(Array(float64, 1, 'C', False, aligned=True),)"]
    wide = '"prefer-vector-width"="512"'
    assert [wide in text for sig, text in sorted(ir.items())] == [True, False]


def test_dewi_wrap_is_python_modulo_bit_for_bit():
    """The dewi move wraps with Python's float ``%`` (as dewi-kadita does); its fast path
    must give the same bits everywhere, zeros, both edges and far outside included."""
    from numba import njit

    from simcore.models.couzin.rules import _python_mod

    @njit
    def wrap_all(xs, box, out):
        for i in range(xs.shape[0]):
            out[i] = _python_mod(xs[i], box)

    rng = np.random.default_rng(8)
    for box in (35.0, 1.0, 0.1, 55.61, 1e-300, 3e300):
        edges = [0.0, -0.0, box, -box, 2 * box, -2 * box, np.nextafter(box, 0),
                 np.nextafter(-box, 0), np.nextafter(2 * box, 0), np.nextafter(0, 1),
                 np.nextafter(0, -1), 5e-324, -5e-324]
        xs = np.concatenate([rng.uniform(-2.5, 2.5, 20000) * box, edges])
        xs = xs[np.isfinite(xs)]
        got = np.empty_like(xs)
        wrap_all(xs, box, got)
        want = np.array([x % box for x in xs])
        np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))


@pytest.mark.parametrize("cap", [0.0, 1e-12, 0.05, 0.2, 1.0, 3.0, 3.2])
def test_turn_threshold_decides_as_acos(cap):
    """The couzin2002 turn tests c >= cap_dot instead of acos(c) <= cap: the same decision
    for every cosine, those within 2000 doubles of the threshold and random ones (acos as
    the kernels compile it, and Python's)."""
    from simcore.models.couzin.rules import _acos_within, turn_limits

    _, cap_dot = turn_limits(cap)
    assert math.isfinite(cap_dot)
    near = [cap_dot]
    for direction in (-2.0, 2.0):
        d = cap_dot
        for _ in range(2000):
            d = min(1.0, max(-1.0, math.nextafter(d, direction)))
            near.append(d)
    rng = np.random.default_rng(9)
    for c in near + list(rng.uniform(-1.0, 1.0, 20000)) + [-1.0, 1.0, -0.0, 0.0]:
        assert (c >= cap_dot) == _acos_within(c, cap) == (math.acos(c) <= cap), (c, cap_dot)


def test_one_cell_lists_do_not_depend_on_positions():
    """With one cell per axis (the case-4 box: 3 r_a > box) the kernel builds the cell lists
    at a chunk's first step only: they must equal lists built afresh from any later state."""
    from simcore import neighbors

    kw = {k: v for k, v in couzin.PRESETS["dewi_highly_parallel"].items()
          if k not in ("steps", "seed")}
    params = couzin.Params(**{**kw, "n": 120})
    state = couzin.init_state(params, 3)
    key = kernel_key(3)
    couzin.advance(state, params, key, 0, 1)
    _, side, ncell, _ = couzin.cell_plan(params, state["positions"])
    assert ncell.tolist() == [1, 1, 1]
    work = state["_work"]
    kept = {name: work[name].copy() for name in ("cell_of", "bucket_of", "bucket_start", "order")}
    couzin.advance(state, params, key, 1, 25)  # one chunk: lists built at its first step
    fresh = neighbors.allocate(params.n)
    neighbors.build(state["positions"], side, ncell, fresh["cell_of"], fresh["bucket_of"],
                    fresh["bucket_start"], fresh["order"])
    for name, value in kept.items():
        np.testing.assert_array_equal(work[name], value)
        np.testing.assert_array_equal(fresh[name], value)


@pytest.mark.parametrize("rule,box", [("couzin2002", 30.0), ("dewi", 30.0), ("dewi", 35.0)])
def test_a_chunk_of_steps_equals_its_steps_one_by_one(rule, box):
    """A periodic box's plan is fixed for the run, so ten steps in one kernel call must
    give the bits of ten calls of one step: the cell lists follow the agents at every step
    inside a chunk (box 30, r_a 7: 4 cells per axis; box 35, r_a 20: one cell, whose lists
    are built once a chunk)."""
    r_a = 7.0 if box == 30.0 else 20.0
    p = couzin.Params(n=300, r_r=1.0, r_o=3.0, r_a=r_a, noise=0.1, boundary="periodic",
                      box=box, rule=rule, speed=3.0)
    key = kernel_key(6)
    together, apart = couzin.init_state(p, 6), couzin.init_state(p, 6)
    couzin.advance(together, p, key, 0, 10)
    for step in range(10):
        couzin.advance(apart, p, key, step, 1)
    for name in ("positions", "headings"):
        np.testing.assert_array_equal(together[name], apart[name])


# one cell per axis (one phase per step); 4 cells per axis (three phases); open space in
# float32 (recentred copies, planned per chunk: all pairs for this compact school); open
# space in float64, the school bursting out of a dense ball: its first chunk's plan has
# cells of r_a / 2, the later ones of r_a; the same burst in float32 with 1000 agents:
# all pairs for two chunks, then cells of r_a
_TEAM_CASES = [dict(rule="dewi", boundary="periodic", box=35.0, r_a=20.0,
                    kernel_precision="float32"),
               dict(rule="couzin2002", boundary="periodic", box=30.0, r_a=7.0),
               dict(rule="couzin2002", boundary="open", r_a=7.0, kernel_precision="float32"),
               dict(rule="couzin2002", boundary="open", n=300, r_a=4.0, speed=10.0, burst=True),
               dict(rule="couzin2002", boundary="open", n=1000, r_a=4.0, speed=10.0, burst=True,
                    kernel_precision="float32")]


def _team_state(case):
    """Parameters and initial state of a team test case."""
    case = dict(case)
    burst = case.pop("burst", False)
    p = couzin.Params(**{"n": 150, "r_r": 1.0, "r_o": 3.0, "noise": 0.1, "speed": 3.0, **case})
    state = couzin.init_state(p, 4)
    if burst:  # every agent heading straight out of a ball of radius ~1.5
        x = np.random.default_rng(4).normal(size=(p.n, 3))
        state["positions"][:] = 0.5 * x
        state["headings"][:] = x / np.linalg.norm(x, axis=1)[:, None]
    return p, state


def _team_digest(state, frames):
    """The final state and every chunk's frame, hashed."""
    import hashlib

    parts = [state["positions"], state["headings"], frames["positions"], frames["headings"]]
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in parts)).hexdigest()


_TEAM_RUNS = r"""
import sys
import numba
from simcore.models import couzin
from simcore.rng import kernel_key
sys.path.insert(0, sys.argv[1])
from test_couzin import _TEAM_CASES as CASES, _team_digest as digest, _team_state

members = 0
numba.get_num_threads = lambda: members  # what advance() hands the team as its size
for threads, members in [(2, 2), (1, 2), (2, 3), (1, 1)]:
    numba.set_num_threads(threads)
    for case in CASES:
        p, state = _team_state(case)
        frames = couzin.advance_frames(state, p, kernel_key(4), 0, 4, 3, parallel=True)
        print(threads, members, digest(state, frames), flush=True)
"""


def test_the_threaded_team_gives_the_serial_bits_and_never_waits_forever():
    """The threaded loop runs a call's chunks in one parallel region whose members claim
    units of work in order (simcore/_team.py; each chunk's plan, cell lists and frame are
    units too). Whatever the team's size against the threads that run it (2 members on 2
    threads; 2 on one thread, run one after the other; 3 on 2), it must finish, with the
    serial kernel's bits in the final state and in every chunk's frame (3 chunks of 4
    steps): one cell per axis, 4 cells per axis, and open space (a plan per chunk) in
    float32 (recentred copies; all pairs, then cells) and float64."""
    import subprocess

    want = []
    for case in _TEAM_CASES:
        p, state = _team_state(case)
        frames = couzin.advance_frames(state, p, kernel_key(4), 0, 4, 3, parallel=False)
        want.append(_team_digest(state, frames))
    assert len(set(want)) == len(_TEAM_CASES)
    out = subprocess.run([sys.executable, "-c", _TEAM_RUNS, str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=300, check=True).stdout.split("\n")
    got = [line.split() for line in out if line.strip()]
    n = len(_TEAM_CASES)
    assert [(t, m) for t, m, _ in got[::n]] == [("2", "2"), ("1", "2"), ("2", "3"), ("1", "1")]
    assert [digest for _, _, digest in got] == want * 4
