"""3D Couzin zone model of fish schools (Couzin et al., J. Theor. Biol. 218:1, 2002).

Units: lengths in units of the repulsion radius scale used by the presets (r_r = 1),
time in the model's time unit (Couzin's seconds), angles in radians except
``field_of_view`` (degrees). Each agent has a position c_i and a unit heading u_i and
moves at constant ``speed``.

Two rules:

``rule="couzin2002"`` (default), the published model:
  * zones by distance |r_ij|: repulsion < r_r <= orientation < r_o <= attraction < r_a;
  * neighbours behind the agent, outside the field of perception ``field_of_view``
    (270° by default: a rear blind cone of half-angle 45°), are ignored in the
    orientation and attraction zones; repulsion sees all around;
  * any neighbour in the repulsion zone: d = -Σ r̂_ij (repulsion overrides);
  * otherwise d_o = û_i + Σ_ZOO û_j (the agent aligns with itself too, as in Couzin
    2005 and FishSim; this only adds inertia), d_a = Σ_ZOA r̂_ij, each normalised; if
    both zones are occupied d = ½(d̂_o + d̂_a), else the occupied one; no neighbour
    keeps the heading;
  * noise: d is rotated by a spherically wrapped Gaussian (a tangent-plane Gaussian of
    s.d. ``noise`` per component, applied via the exponential map);
  * turn: the heading rotates toward d by at most ``turning_rate·dt`` (a true rotation;
    it aligns exactly if closer);
  * move: c_i += speed·dt·u_i. All agents update synchronously.

``rule="dewi"``, the dewi-kadita 0.0.4 variant, reproduced operation by operation:
periodic cube, minimum image, blind cone on all zones, raw sums with the orientation
sum weighted by ``orientation_weight`` and no ½, a linear-blend turn capped at
``turning_rate·dt`` per step, isotropic Gaussian noise added after the cap, semi-implicit
Euler. Unlike the anchor it is seeded, and ``init`` reproduces its initial condition
for the same seed (numpy's legacy RandomState stream).

Boundaries: ``open`` (default), ``periodic`` cube of side ``box`` (minimum image), or
``reflecting`` cube walls [0, box] (specular reflection of position and heading).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from simcore import _team, neighbors
from simcore._errors import UserInputError
from simcore.engine import Engine, Option
from simcore.models.couzin.params import (
    _PARALLEL_MIN_N, BOUNDARIES, DEFAULT_PRESET, DEFAULT_STEPS, DEFAULT_WRITE_EVERY, NAME, NDIM,
    PRESET_DOCS, PRESETS, RULES, Params, extra_variables, geometry, time_per_step, warnings)
from simcore.models.couzin.rules import (NO_CELL, PADDING, bounding_box_plan, run_steps_for,
                                         turn_limits)

# the engine's public names
__all__ = ["ENGINE", "Params", "PRESETS", "PRESET_DOCS", "RULES", "BOUNDARIES", "init_state",
           "advance", "advance_frames", "frame", "state_from_frame", "cell_plan",
           "stability_advice",
           "MAX_COORDINATE", "warnings"]


# ---------------------------------------------------------------------------- initial state
def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def init_state(params: Params, seed: int) -> dict[str, np.ndarray]:
    """Initial positions and unit headings (float64), plus the kernel's work arrays."""
    n = params.n
    if params.rule == "dewi":
        pos, head = _init_dewi(params, seed)
    else:
        g = np.random.default_rng(seed)
        center = np.full(3, params.box / 2) if params.boundary != "open" else np.zeros(3)
        if params.init == "random":
            size = params.init_size or (params.box if params.boundary != "open"
                                        else 2.0 * params.r_r * n ** (1 / 3))
            pos = center + (g.random((n, 3)) - 0.5) * size
            head = _unit(g.standard_normal((n, 3)))
        else:
            radius = params.init_size or (params.box / 4 if params.boundary != "open"
                                          else max(3.0, n / (4 * math.pi)) * params.r_r)
            phi = 2 * math.pi * np.arange(n) / n + 0.1 * g.standard_normal(n)
            r = radius * (1 + 0.15 * g.standard_normal(n))
            pos = center + np.stack([r * np.cos(phi), r * np.sin(phi),
                                     0.1 * radius * g.standard_normal(n)], axis=1)
            head = _unit(np.stack([-np.sin(phi), np.cos(phi), 0.1 * g.standard_normal(n)], axis=1))
        if params.boundary == "periodic":
            pos %= params.box
        elif params.boundary == "reflecting":
            pos = np.clip(pos, 0.0, params.box)
    state = {"positions": np.ascontiguousarray(pos, dtype=np.float64),
             "headings": np.ascontiguousarray(head, dtype=np.float64)}
    return state


def _init_dewi(params: Params, seed: int):
    """dewi-kadita's CouzinSystem initial condition for ``np.random.seed(seed)``."""
    legacy = np.random.RandomState(seed)
    n, box, speed = params.n, params.box, params.speed
    if params.init == "random":
        pos = legacy.rand(n, 3) * box
        vel = legacy.randn(n, 3)
        norms = np.linalg.norm(vel, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        vel = (vel / norms) * speed
    else:
        radius = params.init_size if params.init_size is not None else box * 0.25
        center = np.array([box / 2, box / 2, box / 2])
        pos = np.zeros((n, 3))
        vel = np.zeros((n, 3))
        for i in range(n):
            theta = 2 * np.pi * i / n + legacy.randn() * 0.1
            r = radius + legacy.randn() * (radius * 0.15)
            pos[i] = [center[0] + r * np.cos(theta), center[1] + r * np.sin(theta),
                      center[2] + legacy.randn() * (radius * 0.3)]
            v = np.array([-np.sin(theta), np.cos(theta), legacy.randn() * 0.1])
            vel[i] = v / np.linalg.norm(v) * speed
        pos = np.mod(pos, box)
    # the anchor keeps velocities; its heading is vel/|vel| at the next step
    head = vel / np.linalg.norm(vel, axis=1, keepdims=True)
    return pos, head



def cell_plan(params: Params, positions: np.ndarray, all_pairs: bool = False) -> tuple:
    """Cell geometry for ``params`` (``all_pairs=True`` gives the all-pairs reference).

    Periodic boxes: the box's number density, fixed for the run (:func:`_periodic_plan`:
    in float32 all pairs where cells would clearly cost more). Open space and reflecting
    boxes: the agents' bounding box, planned again every chunk
    (:func:`rules.bounding_box_plan`: in float32 from its extent, all pairs for a
    compact school).
    """
    box = np.full(3, params.box) if params.boundary == "periodic" else np.zeros(3)
    if all_pairs:
        return neighbors.all_pairs_plan(box)
    if params.boundary == "periodic":  # fixed for the run: computed once, not per chunk
        return tuple(a.copy() for a in _periodic_plan(params.box, params.r_a, params.n,
                                                      params.kernel_precision))
    plan = neighbors.empty_plan(box)
    bounding_box_plan(positions, params.r_a, *plan, params.kernel_precision == "float32")
    return plan


@functools.lru_cache(maxsize=64)
def _periodic_plan(box: float, r_a: float, n: int, precision: str = "float64"):
    """The plan of the box's number density (:func:`neighbors.auto_plan`); in float32,
    all pairs instead where :func:`neighbors.periodic_work` expects them at most half the
    cells' work for agents spread uniformly (the float32 loop's cell visits cost 5-50
    pairs each). The margin is for the school's groups, which make cells cheaper than
    the uniform estimate and all pairs no cheaper: at N = 300 in a box of 4 cells a side
    (4.2x) all pairs made whole runs 1.2-1.4x faster, at N = 1000 in one of 6 (1.4x) 1.1-
    1.2x slower. float64 keeps the density plan, whose neighbour order its seeded bits
    follow."""
    cells = neighbors.auto_plan(np.full(3, box), r_a, density=n / box ** 3)
    if precision != "float32" or cells[2].tolist() == [1, 1, 1]:
        return cells
    every = neighbors.all_pairs_plan(np.full(3, box))
    cheaper = neighbors.periodic_work(n, *every) <= 0.5 * neighbors.periodic_work(n, *cells)
    return every if cheaper else cells


_WORK: dict = {}


def kernel_threads(params: Params, n_steps: int, threads: int | None = None) -> int:
    """Threads :func:`advance` computes on by default at ``threads`` (default: Numba's
    thread count): all of them from 64 agents on (2 threads against 1 on the Intel VM:
    0.6-0.7x at 16 agents, 1.0x at 32, 1.2-1.3x at 48-64, 1.4-1.6x at 100), else one."""
    threads = numba.get_num_threads() if threads is None else threads
    return threads if params.n >= _PARALLEL_MIN_N and threads > 1 else 1


def advance(state, params: Params, key, step: int, n_steps: int, *, all_pairs: bool = False,
            parallel: bool | None = None) -> None:
    """Advance ``state`` in place by ``n_steps`` steps starting at global step ``step``.

    ``all_pairs=True`` uses the O(N²) reference search; ``parallel`` forces the threaded
    (True) or serial (False) kernel; by default threads are used for n >= 64. Results
    are identical either way.
    """
    advance_frames(state, params, key, step, n_steps, 1, all_pairs=all_pairs,
                   parallel=parallel)


def advance_frames(state, params: Params, key, step: int, n_steps: int, n_chunks: int, *,
                   all_pairs: bool = False, parallel: bool | None = None
                   ) -> dict[str, np.ndarray]:
    """Advance ``state`` in place by ``n_chunks`` chunks of ``n_steps`` steps in one kernel
    call and return the state after each chunk, stacked (positions and headings
    (chunks, n, 3): views of work arrays, valid until the next call; for the driver's
    frames). The same bits as ``n_chunks`` calls of :func:`advance`.

    Raises :class:`UnstableRunError` naming the first chunk whose state is not finite; its
    ``good_states`` holds the states of the chunks before it. In open space the chunks
    are cut (fewer returned) where the agents could pass :data:`MAX_COORDINATE`."""
    n = params.n
    positions = state["positions"]
    if not (np.isfinite(positions).all() and np.isfinite(state["headings"]).all()):
        # only a state edited in memory gets here: runs stop at a non-finite chunk and
        # init_from refuses one; the cell plan would fail on it with NumPy's own message
        raise UserInputError(
            "The Couzin state to advance holds non-finite positions or headings (NaN or "
            "infinity), so no step can be taken from it. Start from a state made by "
            "init() or init_from(), or from the good_states of the UnstableRunError that "
            "stopped the run.")
    real = np.dtype(params.kernel_precision)
    work = state.get("_work")
    if work is None or work["order"].shape[0] != n or work["copies"].dtype != real:
        work = neighbors.allocate(n)
        work["sums"] = np.empty((n, 12))  # each agent's zone sums (float64)
        work["origin"] = np.zeros(3)
        pad = PADDING if real == np.float32 else 0  # the float32 loop reads whole vectors
        # sorted copies x, y, z, hx, hy, hz; two rows: the threaded step writes the next
        # step's while the team still reads this one's
        work["copies"] = np.zeros((2, 6, n + pad), dtype=real)
        work["keys"] = np.full(n + pad, NO_CELL, dtype=np.int32 if pad else np.int64)
        state["_work"] = work
    n_chunks = _chunks_within_reach(state, params, step, n_steps, n_chunks)
    # the team's counters, then where each chunk's units begin (rules._team_chunks)
    if work.get("counters") is None or work["counters"].shape[0] < _team.COUNTERS + n_chunks + 1:
        work["counters"] = np.zeros(_team.COUNTERS + n_chunks + 1, dtype=np.int64)
    kept = work.get("kept")
    if kept is None or kept.shape[1] < n_chunks:
        kept = work["kept"] = np.empty((2, n_chunks, n, 3))
    kept = kept[:, :n_chunks]
    kept_pos, kept_head = kept[0], kept[1]  # the kernel fills all but the last chunk's
    replan = params.boundary != "periodic" and not all_pairs
    plan = work.get("plan") if replan else None  # a replanned run's plan: the kernel fills it
    if plan is None:
        plan = cell_plan(params, positions, all_pairs)
        if replan:
            work["plan"] = plan
    box, side, ncell, reach = plan
    if parallel is None:
        parallel = kernel_threads(params, n_steps) > 1
    if params.rule == "dewi":
        cos_blind = -math.cos(math.radians((360.0 - params.field_of_view) / 2)) \
            if params.field_of_view < 360.0 else -3.0
    else:
        cos_blind = -3.0
    cos_fov = math.cos(math.radians(params.field_of_view / 2))
    run_steps_for(bool(parallel))(
        positions, state["headings"], work["sums"], box, side, ncell, reach,
        work["cell_of"], work["bucket_of"], work["bucket_start"], work["order"], work["origin"],
        work["copies"], work["keys"], work["counters"],
        RULES[params.rule], BOUNDARIES[params.boundary], params.box, params.r_r ** 2,
        params.r_o ** 2, params.r_a ** 2, cos_fov, cos_blind, params.orientation_weight,
        turn_limits(params.turning_rate * params.dt), params.noise, params.speed, params.dt,
        np.uint64(key), np.int64(step), np.int64(n_steps),
        numba.get_num_threads() if parallel else 1, np.int64(n_chunks), replan,
        float(params.r_a), kept_pos[:-1], kept_head[:-1])
    kept_pos[-1], kept_head[-1] = positions, state["headings"]
    finite = np.isfinite(kept).all(axis=(0, 2, 3))
    if not finite.all():
        from simcore._errors import UnstableRunError

        c = int(np.argmin(finite))
        first = step + c * n_steps
        err = UnstableRunError(
            f"The Couzin run became unstable before step {first + n_steps} (in the chunk "
            f"of steps {first}..{first + n_steps}): positions or headings are no longer "
            "finite. " + stability_advice(params), first_step=first, last_step=first + n_steps)
        err.good_states = {"positions": kept_pos[:c], "headings": kept_head[:c]}
        raise err
    return {"positions": kept_pos, "headings": kept_head}


# Agents farther than this from the origin (model lengths) are a runaway: cell indices
# (int64) and squared distances stop being exact long before float64 overflows, and the
# float32 file cannot hold 1e39.
MAX_COORDINATE = 1e15


def stability_advice(params: Params) -> str:
    """Advice for a runaway Couzin run that fits its parameters (speed, dt, zone radii)."""
    step_len = params.speed * params.dt
    good = params.r_r / params.speed
    if step_len > params.r_r:
        return (f"One step moves an agent by speed·dt = {params.speed:g} × {params.dt:g} = "
                f"{step_len:.3g} length units, more than the repulsion radius r_r = "
                f"{params.r_r:g}, so the zones are jumped over: rerun with dt <= {good:.3g} "
                "(r_r / speed), with steps raised by the same factor to cover the same time.")
    return (f"The step length speed·dt = {step_len:.3g} is below r_r = {params.r_r:g}, so the "
            "time step is not the cause: check the other parameters (noise, turning_rate) and "
            "report the command if they are sensible.")


def _chunks_within_reach(state, params: Params, step: int, n_steps: int, n_chunks: int) -> int:
    """How many of ``n_chunks`` chunks can run before an open-space agent could pass
    :data:`MAX_COORDINATE` (each step moves it by at most speed·dt per axis): all in a
    box, at least one; the first chunk is refused (UnstableRunError, before it runs) if
    even it could."""
    if params.boundary != "open" or n_steps <= 0 or not params.n:
        return n_chunks
    far = float(np.abs(state["positions"]).max())
    step_len = params.speed * params.dt
    if n_chunks > 1 and step_len > 0:  # c chunks fit while far + step_len·n_steps·c < MAX
        room = (MAX_COORDINATE - far) / (step_len * n_steps)
        n_chunks = max(1, min(n_chunks, math.ceil(room) - 1))
    if far + step_len * n_steps < MAX_COORDINATE:
        return n_chunks
    from simcore._errors import UnstableRunError

    within = max(0, int((MAX_COORDINATE - far) // step_len)) if step_len > 0 else n_steps
    first_bad = step + min(n_steps, within + 1)
    raise UnstableRunError(
        f"The Couzin run would run away before step {first_bad} (in the chunk of steps "
        f"{step}..{step + n_steps}): agents in open space move by speed·dt = {step_len:.3g} "
        f"per step and would pass {MAX_COORDINATE:.0e} length units from the origin, beyond "
        "what the cell lists and the file can represent. " + stability_advice(params),
        first_step=step, last_step=first_bad)


def state_from_frame(variables: dict[str, np.ndarray], params: Params) -> dict[str, np.ndarray]:
    """The state of a stored frame (``simcore run --init-from``): positions, and headings
    from the stored velocities (speed × heading, renormalised)."""

    pos = np.array(variables["coordinates"], dtype=np.float64)
    vel = np.array(variables["velocities"], dtype=np.float64)
    norm = np.linalg.norm(vel, axis=1)
    if not (np.isfinite(pos).all() and np.isfinite(vel).all()) or not np.all(norm > 0):
        raise UserInputError("init_from: the stored frame has non-finite positions or zero "
                             "velocities, so no headings can be taken from it.")
    if params.boundary == "periodic":
        pos %= params.box
    elif params.boundary == "reflecting" and (pos.min() < 0 or pos.max() > params.box):
        raise UserInputError(f"init_from: the stored agents lie outside the reflecting cube "
                             f"[0, {params.box:g}]^3 of this run; use a larger box.")
    return {"positions": pos, "headings": vel / norm[:, None]}


def frame(state, params: Params) -> dict[str, np.ndarray]:
    """Per-frame variables: positions, velocities (speed × heading), cell lengths."""
    L = params.box if params.boundary == "periodic" else 0.0
    return {
        "coordinates": state["positions"],
        "velocities": state["headings"] * params.speed,
        "cell_lengths": np.array([L, L, L]),
    }


def run_bytes(params: Params) -> tuple[int, int]:
    """Peak bytes of the state, work arrays and one frame, and the floats per agent in a
    frame (for the memory check before a run)."""
    n = params.n
    state = 48 * n  # positions, headings
    work = (72 + 96) * n + (24 + 96 + 8) * n  # allocate(); zone sums, 2 x 6 sorted copies, keys
    return state + work + 24 * n, 6  # frame: velocities = speed · headings


def analysis_bytes(n_atoms: int, n_frames: int, params: Params | None = None) -> int:
    """Peak bytes of the schooling analysis: one frame at a time (positions, velocities,
    neighbour trees and pair lists of about 30 neighbours per agent) plus the per-frame
    results."""
    return 48 * n_atoms + 30 * 24 * n_atoms + 16 * 30 * n_atoms + 200 * n_frames


ENGINE = Engine(
    name=NAME, ndim=NDIM, Params=Params, presets=PRESETS, preset_docs=PRESET_DOCS,
    description="3D Couzin zone model of fish schools",
    default_preset=DEFAULT_PRESET, default_steps=DEFAULT_STEPS,
    default_write_every=DEFAULT_WRITE_EVERY,
    init_state=init_state, advance=advance, advance_frames=advance_frames, frame=frame,
    state_from_frame=state_from_frame,
    extra_variables=extra_variables, time_per_step=time_per_step, warnings=warnings,
    geometry=geometry, run_bytes=run_bytes, analysis_bytes=analysis_bytes,
    kernel_threads=kernel_threads,
    # away from a periodic box each call plans its cells from the school's extent, and the
    # cells order each agent's neighbour sums: a cut within an interval changes the bits
    cuts_anywhere=lambda params: params.boundary == "periodic",
    analysis="simcore.analysis.schooling:schooling_indices_from_dataset",
    analysis_options=(Option("convention", "schooling entropies: corrected (default) or the "
                             "dewi-kadita definitions", choices=("corrected", "dewi"),
                             default="corrected"),),
    figure="simcore.plotting.couzin:figure", animation="simcore.plotting.couzin:animate",
    quick_run={"n": 200, "steps": 60, "write_every": 10},
)
