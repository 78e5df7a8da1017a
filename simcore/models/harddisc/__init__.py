"""Event-driven molecular dynamics (EDMD) of 2D hard discs: free expansion V -> kV.

N equal discs (diameter σ, mass m = 1) in the box [0, k·L] × [0, L_y]; hard walls in x
(or periodic, ``x_boundary``), hard walls or periodic in y (``y_boundary``). Before
t = 0 the gas is confined to [0, L] by a partition at x = L (optionally equilibrated
there for ``equilibrate`` collisions per particle); at t = 0 the partition is removed and
the gas expands into the volume k·V. L follows from the packing fraction of the *final*
volume: φ = N π σ² / (4 k L L_y), L_y = ``aspect``·L.

Units: σ (length), m = 1, k_B T = ``T`` (energy), time σ √(m / k_B T) for T = 1. The
total energy is exactly N·T (2D, ½ Σ v² = N T) at t = 0 (velocities shifted to zero total
momentum and rescaled before any equilibration).

Algorithm (everything inside one Numba function per frame interval):

* **pair prediction** with the stable root dt = (r² − σ²) / (−b + √(b² − v²(r² − σ²))),
  b = r·v < 0; a pair that overlaps by round-off (r² < σ²) while approaching collides at
  once (dt = 0), one that separates is ignored (Bannerman et al. 2014);
* **cell lists** of side a ≥ σ (doubly linked, O(1) moves) with **cell-crossing events**;
  a crossing scans only the three newly adjacent cells and keeps the old best pair when
  its partner is unchanged;
* **one pending event per particle** (the earliest of its best pair, wall and crossing
  times, each cached) and **collision counters** for lazy invalidation: a pair event
  stores the partner's counter and is recomputed on pop if the partner has collided;
* **delayed states** (Lubachevsky): each particle stores (r, v, t_local) and is streamed
  only when touched;
* **priority queue**: a tournament tree over the N particles' next-event times (each
  node holds the earlier of its two children; an update climbs from the particle's leaf,
  loading one sibling per level: ``queue="heap"``, the default, named for the 4-ary heap
  it replaced), or a calendar queue (``queue="calendar"``); both give bit-identical
  trajectories (ties are broken by the particle index in both), the choice is by speed —
  see ``benchmarks/harddisc.py`` and ``benchmarks/RESULTS.md``;
* **spatial renumbering**: the kernel renumbers the particles by cell at its start and
  every ``RESORT_EVENTS_PER_PARTICLE``·N events (rows move, no arithmetic changes), so
  neighbouring discs are neighbours in memory; the caller sees its own particle order;
* the event loop calls no function that takes an array (Numba adds atomic reference-count
  updates of every array argument to each such call, inlined or not): its helpers take
  and return scalars, and the cell scan and the queue update are written out in the loop;
* **branch-free hot spots**: the contact time of each scanned neighbour, the wall and
  cell-crossing times and the tree's choice between two siblings are computed with
  selects instead of branches: those outcomes are coin flips, and the mispredictions cost
  a quarter of the run time at φ = 0.05.

Driver contract: one driver step is one frame interval ``frame_dt`` (``time_per_step``),
``steps = t_end / frame_dt``. Every frame interval is an independent kernel call that
rebuilds cells and queue from the synchronised state and synchronises all particles to
the frame time at its end, so a resumed run does the very same arithmetic as an
uninterrupted one (bit-identical files).

Counters per frame (cumulative since t = 0): pair collisions, wall collisions, the
impulse given to the x and y walls (Σ 2m|v_n|), and the collision virial Σ |r_ij| |Δv_n|
(so that P A = N T + virial / (2 t) in 2D).
"""

from __future__ import annotations

import math

import numpy as np

from simcore._errors import UserInputError
from simcore.engine import Engine
from simcore.models.harddisc.events import _cross_time, _pair_time, _wall_time
from simcore.models.harddisc.params import (
    DEFAULT_PRESET, DEFAULT_STEPS, DEFAULT_WRITE_EVERY, MAX_BOX_SIGMAS, MAX_EVENTS_PER_FRAME,
    MAX_INITIAL_PHI, N_STATS, NAME, NDIM, PRESET_DOCS, PRESETS, RESORT_EVENTS_PER_PARTICLE,
    RUN_LENGTH_PARAMS, ST_COLL, ST_CROSS, ST_EVENTS, ST_IMP_X, ST_IMP_Y, ST_STALE, ST_VIRIAL,
    ST_WALL, THREADED, Params, _cell_grid, enskog_collision_rate, estimated_events_per_frame,
    extra_variables, geometry, henderson_g, henderson_z, mean_free_path, resolve_run,
    time_per_step, warnings)
from simcore.models.harddisc.placement import _initial_positions
from simcore.models.harddisc.simulate import _simulate

# the engine's public names (and kernel pieces that tests call directly)
__all__ = ["ENGINE", "Params", "PRESETS", "PRESET_DOCS", "init_state", "advance", "frame",
           "state_from_frame", "henderson_g", "henderson_z", "enskog_collision_rate",
           "mean_free_path", "estimated_events_per_frame", "MAX_EVENTS_PER_FRAME",
           "MAX_INITIAL_PHI", "MAX_BOX_SIGMAS", "ST_COLL", "ST_WALL", "ST_IMP_X", "ST_IMP_Y",
           "ST_VIRIAL", "ST_EVENTS", "ST_CROSS", "ST_STALE", "N_STATS", "_pair_time",
           "_cross_time", "_wall_time", "_cell_grid"]


def _aligned_zeros(size: int, dtype=np.float64) -> np.ndarray:
    """Zeroed 1-D array of 8-byte items starting on a 64-byte cache-line boundary."""
    buf = np.zeros(size + 8, dtype=dtype)
    off = (-buf.ctypes.data % 64) // 8
    return buf[off:off + size]


def _aligned_rows(n: int, width: int) -> np.ndarray:
    """Zeroed (n, width) float64 array that starts on a 64-byte cache-line boundary
    (width 8: each disc's streamed state x, y, vx, vy, t_local is one cache line, which
    the neighbour scans read; width 2: a tree node and its sibling share 32 bytes)."""
    return _aligned_zeros(n * width).reshape(n, width)


def _leaves(n: int) -> int:
    """Leaves of the event queue's tournament tree: the power of two >= max(n, 2)."""
    return 1 << max(1, (n - 1).bit_length())


def _work(state, params: Params):
    n = params.n
    work = state.get("_work")
    if work is None or work["P"].shape[0] != n:
        ncx, ncy = _cell_grid(params, params.L_x)
        nb = max(16, 1 << int(math.ceil(math.log2(max(n, 1)))))
        work = dict(P=_aligned_rows(n, 8), I=np.zeros((n, 5), dtype=np.int64),
                    E=np.zeros((n, 4)), head=np.zeros(ncx * ncy, dtype=np.int64),
                    nxt=np.zeros(n, dtype=np.int64), prv=np.zeros(n, dtype=np.int64),
                    tree=_aligned_rows(2 * _leaves(n), 2),
                    Q=np.zeros(4), bhead=np.zeros(nb + 1, dtype=np.int64),
                    bnext=np.zeros(n, dtype=np.int64), bprev=np.zeros(n, dtype=np.int64),
                    binof=np.zeros(n, dtype=np.int64), perm=np.zeros(n, dtype=np.int64))
        state["_work"] = work
    return work


def _run(state, params: Params, lx: float, xper: bool, t_stop: float, max_coll: float,
         stats: np.ndarray) -> float:
    """One kernel call on the state in a box of width lx (the partition or the final box)."""
    work = _work(state, params)
    ncx, ncy = _cell_grid(params, lx)
    if work["head"].shape[0] < ncx * ncy:
        work["head"] = np.zeros(ncx * ncy, dtype=np.int64)
    return _simulate(state["positions"], state["velocities"], lx, params.L_y, xper,
                     params.y_boundary == "periodic", params.wall_radius, params.sigma,
                     params.interactions, ncx, ncy, t_stop, max_coll, stats, work["P"],
                     work["I"], work["E"], work["head"], work["nxt"], work["prv"],
                     work["tree"], params.queue == "calendar", work["Q"], work["bhead"],
                     work["bnext"], work["bprev"], work["binof"], work["perm"],
                     RESORT_EVENTS_PER_PARTICLE * params.n)



def init_state(params: Params, seed: int) -> dict[str, np.ndarray]:
    """Positions (N, 2) uniform without overlap in the initial volume, velocities (N, 2)
    with zero total momentum and energy exactly N·T, optionally equilibrated behind the
    partition; counters zero. Randomness: numpy PCG64 seeded with ``seed``."""
    g = np.random.default_rng(seed)
    n = params.n
    pos = _initial_positions(params, g)
    if params.velocities == "maxwell":
        vel = g.standard_normal((n, 2)) * math.sqrt(params.T)
    else:
        ang = g.uniform(0.0, 2.0 * math.pi, n)
        vel = math.sqrt(2.0 * params.T) * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    if n > 1:
        vel -= vel.mean(axis=0)
    vel *= math.sqrt(2.0 * n * params.T / float((vel ** 2).sum()))
    state = {"positions": pos, "velocities": vel, "stats": np.zeros(N_STATS)}
    if params.equilibrate > 0 and params.interactions and n > 1:
        partition = params.expansion > 1.0
        lx = params.L if partition else params.L_x
        xper = params.x_boundary == "periodic" and not partition
        scratch = np.zeros(N_STATS)
        target = math.ceil(params.equilibrate * n / 2.0)
        # the partition box needs its own cell grid: drop the cached work arrays after
        _run(state, params, lx, xper, np.inf, float(target), scratch)
        state.pop("_work", None)
    return state


def advance(state, params: Params, key, step: int, n_steps: int) -> None:
    """Advance ``n_steps`` frame intervals (n_steps · frame_dt in time), in place.

    Each interval is one kernel call from a synchronised state, so the result does not
    depend on how the intervals are grouped into calls (resume is bit-identical).
    """
    xper = params.x_boundary == "periodic"
    for k in range(n_steps):
        _run(state, params, params.L_x, xper, params.frame_dt, np.inf, state["stats"])
        if not (np.isfinite(state["positions"]).all()
                and np.isfinite(state["velocities"]).all()):
            from simcore._errors import UnstableRunError

            raise UnstableRunError(
                f"The hard-disc run became unstable before step {step + k + 1} (frame interval "
                f"{step + k}..{step + k + 1}, in the chunk of steps {step}..{step + n_steps}): "
                "positions or velocities are no longer finite. With T = "
                f"{params.T:g}, sigma = {params.sigma:g} and frame_dt = {params.frame_dt:g} "
                "this should not happen; rerun with T = 1 (T only rescales time) and report "
                "the command if it persists.", first_step=step + k, last_step=step + k + 1)


def state_from_frame(variables: dict[str, np.ndarray], params: Params) -> dict[str, np.ndarray]:
    """The state of a stored frame (``simcore run --init-from``): positions and velocities
    (the new run's T is not imposed), counters zero. The discs must fit this run's initial
    volume without overlap (a float32 file rounds positions: store float64 to be safe)."""
    from scipy.spatial import cKDTree

    pos = np.array(variables["coordinates"], dtype=np.float64)[:, :2]
    vel = np.array(variables["velocities"], dtype=np.float64)[:, :2]
    if not (np.isfinite(pos).all() and np.isfinite(vel).all()):
        raise UserInputError("init_from: the stored frame holds non-finite values.")
    x0, x1, y0, y1 = params.accessible(initial=True)
    lx = params.L if params.expansion > 1.0 else params.L_x
    xper = params.x_boundary == "periodic" and params.expansion <= 1.0
    yper = params.y_boundary == "periodic"
    if xper:
        pos[:, 0] %= lx
    if yper:
        pos[:, 1] %= params.L_y
    outside = ~((pos[:, 0] >= x0) & (pos[:, 0] <= x1) & (pos[:, 1] >= y0) & (pos[:, 1] <= y1))
    if outside.any():
        raise UserInputError(
            f"init_from: {int(outside.sum())} stored discs lie outside this run's initial "
            f"volume [{x0:g}, {x1:g}] x [{y0:g}, {y1:g}] (disc centres); choose a box (phi, "
            "expansion, aspect) that holds them.")
    if params.interactions and params.n > 1:
        box = [lx if xper else 2 * (x1 + params.sigma), params.L_y if yper else
               2 * (y1 + params.sigma)]
        tree = cKDTree(pos, boxsize=box if (xper or yper) else None)
        close = tree.query_pairs(params.sigma * (1 - 1e-12))
        if close:
            raise UserInputError(
                f"init_from: {len(close)} pairs of stored discs overlap (closer than sigma = "
                f"{params.sigma:g}), e.g. discs {sorted(close)[0]}; a float32 file rounds "
                "positions: start from a file written with precision = 'float64', or from "
                "another frame.")
    return {"positions": pos, "velocities": vel, "stats": np.zeros(N_STATS)}


def frame(state, params: Params) -> dict[str, np.ndarray]:
    """Coordinates and velocities (z = 0) and the invariants/counters of the state."""
    n = params.n
    pos = np.zeros((n, 3))
    pos[:, :2] = state["positions"]
    vel = np.zeros((n, 3))
    vel[:, :2] = state["velocities"]
    st = state["stats"]
    v = state["velocities"]
    return {
        "coordinates": pos,
        "velocities": vel,
        "cell_lengths": np.array([params.L_x if params.x_boundary == "periodic" else 0.0,
                                  params.L_y if params.y_boundary == "periodic" else 0.0, 0.0]),
        "energy": np.float64(0.5 * float(np.einsum("ij,ij->", v, v))),
        "momentum": np.array([v[:, 0].sum(), v[:, 1].sum(), 0.0]),
        "collisions": np.float64(st[ST_COLL]),
        "wall_collisions": np.float64(st[ST_WALL]),
        "wall_impulse": np.array([st[ST_IMP_X], st[ST_IMP_Y], 0.0]),
        "virial": np.float64(st[ST_VIRIAL]),
        "events": np.float64(st[ST_EVENTS]),
    }


def run_bytes(params: Params) -> tuple[int, int]:
    """Peak bytes of the state, the event loop's arrays and one frame, and the floats per
    disc in a frame (for the memory check before a run)."""
    n = params.n
    state = 32 * n  # positions, velocities
    # P (N, 8), I (N, 5), E (N, 4), nxt, prv, bnext, bprev, binof, perm, calendar buckets
    # (<= 2N), the tree (2M, 2) with M < 2N leaves; the kernel's renumbering makes
    # temporary copies of P, I, E
    work = (64 + 40 + 32 + 16 + 32 + 16 + 64) * n + (64 + 40 + 32 + 24) * n
    ncx, ncy = _cell_grid(params, params.L_x)
    work += 8 * ncx * ncy
    init = 48 * n  # random placement: candidate batches (2N, 2) and cell links
    return state + work + max(init, 48 * n), 6


def analysis_bytes(n_atoms: int, n_frames: int, params: Params | None = None) -> int:
    """Peak bytes of the Boltzmann entropy: one frame's positions and velocities and the
    cell histograms."""
    return 200 * n_atoms


ENGINE = Engine(
    name=NAME, ndim=NDIM, Params=Params, presets=PRESETS, preset_docs=PRESET_DOCS,
    description="2D hard discs by event-driven molecular dynamics (free expansion V -> kV)",
    default_preset=DEFAULT_PRESET, default_steps=DEFAULT_STEPS,
    default_write_every=DEFAULT_WRITE_EVERY,
    init_state=init_state, advance=advance, frame=frame, state_from_frame=state_from_frame,
    extra_variables=extra_variables, time_per_step=time_per_step, warnings=warnings,
    geometry=geometry, resolve_run=resolve_run, run_length_params=RUN_LENGTH_PARAMS,
    threaded=THREADED, step_unit="frame interval", run_bytes=run_bytes,
    analysis_bytes=analysis_bytes,
    analysis="simcore.analysis.boltzmann:boltzmann_entropy",
    figure="simcore.plotting.harddisc:figure", animation="simcore.plotting.harddisc:animate",
    quick_run={"n": 300, "t_end": 8.0},
)
