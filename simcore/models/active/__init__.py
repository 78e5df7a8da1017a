"""2D active particles: active Brownian particles (ABP) and active Ornstein–Uhlenbeck
particles (AOUP), with WCA or soft-harmonic repulsion and an optional harmonic trap.

Overdamped Langevin dynamics in a periodic square box [0, L)² (Euler–Maruyama for
positions)::

    ABP :  dx_i = (v0 n(θ_i) + μ F_i) dt + √(2 D_t) dW_i,   dθ_i = √(2 D_r) dξ_i
    AOUP:  dx_i = (v0 g_i   + μ F_i) dt + √(2 D_t) dW_i,   dg_i = −γ g_i dt + √(2γ) dη_i

with F_i the pair forces plus the trap −κ (x_i − centre). The angle update is exact (a
wrapped Gaussian); the OU update of g is exact,
g' = e^{−γ dt} g + √(1 − e^{−2γ dt}) ξ. For AOUP, ``D_t`` is the translational noise
called ε by Boffi & Vanden-Eijnden (ε = 0 is their hypoelliptic MIPS case).

Units: lengths in σ (WCA diameter) or in the soft-disc radius r; time in the model
unit (for WCA with ε_LJ = 1 and μ = 1, τ = σ²/(μ ε_LJ)).

Pair forces (F_ij along x̂_ij = (x_i − x_j)/|x_i − x_j|, minimum image):

* ``wca``: U = 4ε[(σ/r)¹² − (σ/r)⁶] + ε for r < 2^{1/6} σ;
* ``soft_harmonic``: the anchor's softplus-smoothed harmonic disc,
  |F| = k f_β(2r₀ − r_ij), f_β(u) = ln(1 + e^{βu})/β, cut at ``cutoff`` (default 4 r₀,
  where f_β ≈ 4e-8 for β = 7.5; the anchor sums all N² pairs, which differs from the
  cut sum by < 1e-7 per pair);
* ``none``: free particles.

Péclet number (ABP): Pe = 3 v0 / (σ D_r), the convention of Stenhammar et al. with
D_t = D_r σ²/3. The box side follows from the packing fraction:
φ = N π a² / L² with a = σ/2 (WCA, none) or a = r₀ (soft discs).

Randomness is counter-based (:mod:`simcore.rng`): identical for any thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simcore import neighbors
from simcore._errors import UserInputError
from simcore.engine import Engine
from simcore.models.active.forces import compute_forces
from simcore.models.active.forces import PAIR_BLOCK
from simcore.models.active.integrate import (N_STATUS, ST_LISTS_VALID, ST_NEEDED_CAPACITY,
                                             ST_NEEDED_PAIRS, ST_PAIRS, force_path,
                                             run_steps_for)
from simcore.models.active.params import (
    _PARALLEL_MIN_N_FORCES, DEFAULT_PRESET, DEFAULT_STEPS, DEFAULT_WRITE_EVERY, HAS_VELOCITIES, NAME,
    NDIM, POTENTIALS, PRESET_DOCS, PRESETS, WCA_RANGE, Params, _max_jump, extra_variables,
    force_scale, geometry, stability_advice, suggested_dt, time_per_step, warnings)

# the engine's public names
__all__ = ["ENGINE", "Params", "PRESETS", "PRESET_DOCS", "POTENTIALS", "WCA_RANGE", "init_state",
           "advance", "forces", "frame", "state_from_frame", "force_scale", "suggested_dt",
           "stability_advice", "SORT_EVERY", "VERLET_SKIN", "ST_NEEDED_CAPACITY",
           "ST_LISTS_VALID"]


# ---------------------------------------------------------------------------- initial state
def init_state(params: Params, seed: int) -> dict[str, np.ndarray]:
    """Positions (N, 3, z = 0), propulsion state and image counts, from a PCG64 generator."""
    g = np.random.default_rng(seed)
    n, L = params.n, params.box
    pos = np.zeros((n, 3))
    if params.init == "lattice":
        m = int(math.ceil(math.sqrt(n)))
        a = L / m
        idx = g.permutation(m * m)[:n]
        pos[:, 0] = (idx % m + 0.5) * a
        pos[:, 1] = (idx // m + 0.5) * a
    elif params.init == "uniform":
        pos[:, :2] = g.random((n, 2)) * L
    else:
        pos[:, :2] = (L / 2 + g.normal(0.0, L / 4, (n, 2))) % L
    state = {"positions": pos, "image": np.zeros((n, 2), dtype=np.int64),
             "ids": np.arange(n, dtype=np.int64), "sorted_at": np.full(1, -1, dtype=np.int64)}
    if params.propulsion == "abp":
        state["theta"] = g.uniform(-math.pi, math.pi, n)
        state["n_hat"] = _orientation(state["theta"])
    else:
        state["g"] = g.standard_normal((n, 2))
    return state



def _work(state, params: Params):
    n = params.n
    work = state.get("_work")
    if work is None or work["order"].shape[0] != n:
        work = neighbors.allocate(n)
        work.update(xs=np.empty(n), ys=np.empty(n), keys=np.empty(n, dtype=np.int64),
                    force=np.zeros((n, 2)), div=np.zeros(n))
        work["plan"] = neighbors.auto_plan([params.box, params.box, 0.0],
                                           max(params.interaction_range, 1e-12),
                                           density=params.n / params.box ** 2, ndim=2)
        nc = neighbors.grid2d_shape(params.box, params.interaction_range)
        if nc * nc > 4 * n + 64:  # a dilute box: the hashed list keeps memory O(N)
            nc = 0
        work["grid_nc"] = nc
        # Verlet lists (cutoff + skin) on a grid of side >= cutoff + skin, when it fits
        skin = _verlet_skin(params) * 2 * params.particle_radius
        work["r_list"] = params.interaction_range + skin
        nv = neighbors.grid2d_shape(params.box, work["r_list"])
        if nv and params.potential != "none":
            # forces() (the frames) keeps the grid of the 0.3-diameter skin it always had:
            # its sums run in grid-cell order, so the frames' forces and drift keep their bits
            r_grid = params.interaction_range + FORCES_GRID_SKIN * 2 * params.particle_radius
            work["grid_nc"] = nc = neighbors.grid2d_shape(params.box, r_grid)
            work["verlet_nc"] = nv
            # neighbours within r_list at close packing (φ = 0.907), with room to spare; an
            # overflow enlarges the lists. int32 rows of ~16 keep the lists in cache.
            capacity = int(1.5 * 0.907 * (work["r_list"] / params.particle_radius) ** 2) + 4
            work["nb"] = np.zeros((n, capacity), dtype=np.int32)
        else:
            work["verlet_nc"] = 0
            work["nb"] = np.zeros((0, 1), dtype=np.int32)
        work["nb_count"] = np.zeros(n, dtype=np.int64)
        work["ref"] = np.zeros((n, 2))
        work["status"] = np.zeros(N_STATUS, dtype=np.int64)  # ST_* fields
        work["status"][ST_PAIRS] = -1
        # flat half pair list of the serial WCA kernel (enlarged when a rebuild needs more)
        work["pi"] = np.zeros(4 * n + 64 if work["nb"].shape[0] else 0, dtype=np.int32)
        work["pj"] = np.zeros_like(work["pi"])
        work["pair_buf"] = np.zeros((2, PAIR_BLOCK))
        work["noise"] = np.zeros((3, n))  # a threaded ABP step's noise (drawn with the forces)
        nc = max(nc, work["verlet_nc"])
        if nc:
            work["bucket_start"] = np.zeros(max(nc * nc + 1, work["bucket_start"].shape[0]),
                                            dtype=np.int64)
        state["_work"] = work
    return work


def _force_args(params: Params):
    return (POTENTIALS[params.potential], params.sigma ** 2, 24.0 * params.epsilon_lj,
            params.interaction_range ** 2, params.k, params.beta, 2.0 * params.radius)


def forces(state, params: Params, divergence: bool = False,
           parallel: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Forces F_i (N, 2) on the current positions (pair + trap) and, if asked, ∇_i·F_i (N,)."""
    import numba

    work = _work(state, params)
    _, side, ncell, reach = work["plan"]
    if parallel is None:
        parallel = params.n >= _PARALLEL_MIN_N_FORCES and numba.get_num_threads() > 1
    compute_forces(parallel)(state["positions"], params.box, side, ncell, reach, work["cell_of"],
                             work["bucket_of"], work["bucket_start"], work["order"], work["xs"],
                             work["ys"], work["keys"], *_force_args(params), params.kappa,
                             work["force"], work["div"], divergence, work["grid_nc"])
    return work["force"].copy(), work["div"].copy()



SORT_EVERY = 1000  # steps between spatial renumberings of the particles
# Sizes from which a threaded step pays (2 threads against 1, benchmarks/RESULTS.md).
# ABP with WCA sums the forces on one thread while the other draws the noise, then
# updates on both: 1.07x at N = 1024, 1.29x at 2048, 1.4-1.7x at 4096 in the developed
# MIPS state; AOUP soft discs 1.01x at 1000, 1.07x at 2000, 1.13x at 4000. Free
# particles do too little per step for a parallel region's start and join: 0.64-0.95x
# at N = 2000 (free and trapped ABP), 1.21-1.31x at 8000; a serial step also leaves the
# writer's worker a core (free_abp's whole run 0.17 -> 0.13 s)
_PARALLEL_STEPS_MIN_N = 2048
_PARALLEL_STEPS_MIN_N_FREE = 8192
# Verlet-list skin in particle diameters. It does not change the results (the forces sum
# the pairs inside the cutoff in index order, whichever list holds them), only the speed:
# 0.5 rebuilds the lists half as often as 0.3 (every ~40 steps in the developed MIPS
# state of benchmarks/active.py), for 15 % more listed pairs (benchmarks/active_profile.py).
VERLET_SKIN = 0.5
FORCES_GRID_SKIN = 0.3  # the skin (diameters) that sizes the grid of forces(), see _work


def _verlet_skin(params: Params) -> float:
    """VERLET_SKIN, or the 0.3 of earlier versions in boxes too small for three cells of
    the larger list radius (so that such boxes keep their Verlet lists and their bits)."""
    for skin in (VERLET_SKIN, FORCES_GRID_SKIN):
        if neighbors.grid2d_shape(params.box, params.interaction_range
                                  + skin * 2 * params.particle_radius):
            return skin
    return VERLET_SKIN


def _renumber_by_cell(state, params: Params, work) -> None:
    """Store the particles in cell order (row-major cells of about two diameters).

    Particles that interact then sit close in memory, so the Verlet-list gathers hit the
    cache (2x at N = 65536). ``state["ids"]`` keeps each slot's particle identity: the
    noise is keyed on it and :func:`frame` writes particles in identity order. Done at
    global steps that are multiples of ``SORT_EVERY`` and stored in the state, so results
    do not depend on ``write_every``, the thread count or a resume.
    """
    L = params.box
    nc = max(1, int(L / (4.0 * params.particle_radius)))
    cell = np.minimum((state["positions"][:, :2] * (nc / L)).astype(np.int64), nc - 1)
    order = np.argsort(cell[:, 1] * nc + cell[:, 0], kind="stable")
    for name in ("positions", "image", "theta", "g", "n_hat", "ids"):
        if name in state:
            state[name][...] = state[name][order]
    work["status"][ST_LISTS_VALID] = 0  # the Verlet lists refer to the old slots


def _orientation(theta):
    """n = (cos θ, sin θ), (N, 2)."""
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


def kernel_threads(params: Params, n_steps: int, threads: int | None = None) -> int:
    """Threads :func:`advance` computes on by default at ``threads`` (default: Numba's
    thread count): all of them from 2048 interacting or 8192 free particles on (see
    ``_PARALLEL_STEPS_MIN_N``), else one."""
    import numba

    smallest = (_PARALLEL_STEPS_MIN_N_FREE if params.potential == "none"
                else _PARALLEL_STEPS_MIN_N)
    threads = numba.get_num_threads() if threads is None else threads
    return threads if params.n >= smallest and threads > 1 else 1


def advance(state, params: Params, key, step: int, n_steps: int, parallel: bool | None = None) -> None:
    """Advance ``state`` in place by ``n_steps`` steps from global step ``step``."""
    work = _work(state, params)
    _, side, ncell, reach = work["plan"]
    abp = params.propulsion == "abp"
    if parallel is None:
        parallel = kernel_threads(params, n_steps) > 1
    unstable = np.zeros(1, dtype=np.int64)
    if "ids" not in state:  # states made outside init_state (analyses): identity
        state["ids"] = np.arange(params.n, dtype=np.int64)
        state["sorted_at"] = np.full(1, -1, dtype=np.int64)
    done = 0
    while done < n_steps:
        now = step + done
        if now % SORT_EVERY == 0 and state["sorted_at"][0] != now:
            _renumber_by_cell(state, params, work)
            state["sorted_at"][0] = now
            if abp:  # reset the carried orientation from θ (stored: resumes stay exact)
                state["n_hat"] = _orientation(state["theta"])
        if abp and "n_hat" not in state:  # a state built outside init_state
            state["n_hat"] = _orientation(state["theta"])
        chunk = min(n_steps - done, SORT_EVERY - now % SORT_EVERY)
        theta = state["theta"] if abp else np.zeros(0)
        g = state["n_hat"] if abp else state["g"]
        path = force_path(POTENTIALS[params.potential], work["nb"].shape[0], params.n)
        done += run_steps_for(bool(parallel), abp, path)(
            state["positions"], state["image"], theta, g, work["force"], work["div"], params.box,
            side, ncell, reach, work["cell_of"], work["bucket_of"], work["bucket_start"],
            work["order"], work["xs"], work["ys"], work["keys"], *_force_args(params),
            params.kappa, params.dt, params.v0, params.mu, params.D_t, params.D_r, params.gamma,
            params.noise == "uniform", np.uint64(key), np.int64(now),
            np.int64(chunk), _max_jump(params), unstable,
            work["verlet_nc"] or work["grid_nc"], work["nb"], work["nb_count"], work["ref"],
            work["r_list"],
            work["status"], state["ids"], work["pi"], work["pj"], work["pair_buf"],
            work["noise"])
        if unstable[0]:
            break
        needed = work["status"][ST_NEEDED_CAPACITY]
        if needed > work["nb"].shape[1]:  # lists overflowed: enlarge, rebuild
            work["nb"] = np.zeros((params.n, int(needed * 1.3) + 4), dtype=np.int32)
        needed = work["status"][ST_NEEDED_PAIRS]
        if needed > work["pi"].shape[0]:  # the flat pair list did not fit: enlarge
            work["pi"] = np.zeros(int(needed * 1.3) + 64, dtype=np.int32)
            work["pj"] = np.zeros_like(work["pi"])
    if unstable[0] or not _finite_state(state, abp):
        from simcore._errors import UnstableRunError

        last = step + done
        raise UnstableRunError(
            f"The integration became unstable before step {last} (in the chunk of steps "
            f"{step}..{step + n_steps}): "
            + ("a force moved a particle by more than "
               f"{_max_jump(params):g} length units in one step"
               if unstable[0] else "the positions or orientations are no longer finite")
            + ". " + stability_advice(params), first_step=step, last_step=last)


def _finite_state(state, abp: bool) -> bool:
    names = ("positions", "theta") if abp else ("positions", "g")
    return all(np.isfinite(state[name]).all() for name in names)



def state_from_frame(variables: dict[str, np.ndarray], params: Params) -> dict[str, np.ndarray]:
    """The state of a stored frame (``simcore run --init-from``): positions wrapped into
    this run's box, image counts, and θ (ABP) or g (AOUP) from the stored extras."""

    n, L = params.n, params.box
    pos = np.zeros((n, 3))
    pos[:, :2] = np.asarray(variables["coordinates"], dtype=np.float64)[:, :2] % L
    image = np.zeros((n, 2), dtype=np.int64)
    if "image" in variables:
        image[:] = np.rint(np.asarray(variables["image"])[:, :2]).astype(np.int64)
    state = {"positions": pos, "image": image, "ids": np.arange(n, dtype=np.int64),
             "sorted_at": np.full(1, -1, dtype=np.int64)}
    need = "theta" if params.propulsion == "abp" else "propulsion"
    if need not in variables:
        raise UserInputError(
            f"init_from: the stored frame has no '{need}' variable, which a "
            f"{params.propulsion.upper()} run starts from (ABP files store theta, AOUP files "
            "propulsion); start from a file of the same propulsion.")
    if params.propulsion == "abp":
        state["theta"] = np.asarray(variables["theta"], dtype=np.float64).copy()
        state["n_hat"] = _orientation(state["theta"])
    else:
        state["g"] = np.asarray(variables["propulsion"], dtype=np.float64)[:, :2].copy()
    if not all(np.isfinite(v).all() for v in state.values()):
        raise UserInputError("init_from: the stored frame holds non-finite values.")
    return state


def frame(state, params: Params) -> dict[str, np.ndarray]:
    """Per-frame variables in particle-identity order; ``drift`` is the deterministic
    drift b = v0 p + μ F (no ``velocities``: see :func:`extra_variables`).

    The forces are summed on the threads the step loop uses (:func:`kernel_threads`; the
    same bits either way): a serial run then compiles no threaded kernel (~5 s of a cold
    cache's first run at N = 512-2047, the defaults included), and leaves the other core
    to the writer's worker."""
    force, _ = forces(state, params, parallel=kernel_threads(params, 0) > 1)
    n, abp = params.n, params.propulsion == "abp"
    if abp:  # n̂ = (cos θ, sin θ) by NumPy, as the files always had it
        p = _orientation(state["theta"])
    else:
        p = np.ascontiguousarray(state["g"])
    ids = state.get("ids")
    if ids is None:
        ids = np.arange(n)
    out = {"coordinates": np.empty((n, 3)), "image": np.empty((n, 3)),
           "drift": np.empty((n, 3)), "force": np.empty((n, 3) if params.write_force else (0, 3))}
    angle = np.empty(n if abp else 0)
    propulsion = np.empty((0, 3) if abp else (n, 3))
    _frame_rows(ids, np.ascontiguousarray(state["positions"]),
                np.ascontiguousarray(state["image"]), p, force, np.asarray(state["theta"])
                if abp else np.empty(0), float(params.v0), float(params.mu), out["coordinates"],
                out["image"], out["drift"], out["force"], angle, propulsion)
    out["cell_lengths"] = np.array([params.box, params.box, 0.0])
    if abp:
        out["theta"] = angle
    else:
        out["propulsion"] = propulsion
    if not params.write_force:
        del out["force"]
    return out


@njit(cache=True)
def _frame_rows(ids, positions, image, p, force, theta, v0, mu, coordinates, image_out, drift,
                force_out, theta_out, propulsion_out):
    """One pass over the particles for :func:`frame`: slot i's values into row ids[i]
    (identity order), 2D vectors padded with z = 0, drift = v0 p + μ F in float64 with the
    same two products and one sum per component as NumPy's ``v0 * p + mu * force`` (no
    fused multiply-add: Numba does not contract without fastmath)."""
    n = ids.shape[0]
    for i in range(n):
        j = ids[i]
        for k in range(3):
            coordinates[j, k] = positions[i, k]
        for k in range(2):
            image_out[j, k] = image[i, k]
            drift[j, k] = v0 * p[i, k] + mu * force[i, k]
        image_out[j, 2] = 0.0
        drift[j, 2] = 0.0
        if force_out.shape[0]:
            force_out[j, 0] = force[i, 0]
            force_out[j, 1] = force[i, 1]
            force_out[j, 2] = 0.0
        if theta_out.shape[0]:
            theta_out[j] = theta[i]
        if propulsion_out.shape[0]:
            propulsion_out[j, 0] = p[i, 0]
            propulsion_out[j, 1] = p[i, 1]
            propulsion_out[j, 2] = 0.0


def run_bytes(params: Params) -> tuple[int, int]:
    """Peak bytes of the state, work arrays and one frame, and the floats per particle in
    a frame (for the memory check before a run)."""
    n, abp = params.n, params.propulsion == "abp"
    state = (24 + 16 + 8) * n + (24 if abp else 16) * n  # pos, image, ids, θ+n̂|g
    work = 72 * n + 32 * n  # neighbours.allocate: cell_of, bucket_of, buckets (<= 4N), order
    work += (16 + 8 + 16 + 8 + 8 + 16) * n  # xs ys, keys, force, div, nb_count, ref
    if params.potential != "none":
        r_list = params.interaction_range + VERLET_SKIN * 2 * params.particle_radius
        capacity = int(1.5 * 0.907 * (r_list / params.particle_radius) ** 2) + 4
        work += 4 * capacity * n + 32 * n  # int32 Verlet lists, flat half pair list
    # frame(): forces copy, orientation, drift, reordered copies, image and extras
    frame_bytes = (24 + 16 + 24 + 24 + 24 + 40) * n + (24 if params.write_force else 0) * n
    floats = 3 + 3 + (1 if abp else 3) + 3 + 3 * params.write_force + 3 * params.write_drift
    return state + work + frame_bytes, floats


def analysis_bytes(n_atoms: int, n_frames: int, params: Params | None = None) -> int:
    """Peak bytes of the active diagnostics: the unwrapped positions of up to 20000
    particles over all frames (MSD), one frame's density grid, neighbour tree and forces."""
    return 16 * min(n_atoms, 20000) * n_frames * 2 + 400 * n_atoms


ENGINE = Engine(
    name=NAME, ndim=NDIM, Params=Params, presets=PRESETS, preset_docs=PRESET_DOCS,
    description="2D active Brownian / active Ornstein-Uhlenbeck particles",
    default_preset=DEFAULT_PRESET, default_steps=DEFAULT_STEPS,
    default_write_every=DEFAULT_WRITE_EVERY,
    init_state=init_state, advance=advance, frame=frame, state_from_frame=state_from_frame,
    extra_variables=extra_variables, time_per_step=time_per_step, warnings=warnings,
    geometry=geometry, has_velocities=HAS_VELOCITIES, run_bytes=run_bytes,
    analysis_bytes=analysis_bytes, kernel_threads=kernel_threads,
    analysis="simcore.analysis.active:active_diagnostics",
    figure="simcore.plotting.active:figure", animation="simcore.plotting.active:animate",
    quick_run={"n": 2048, "steps": 400, "write_every": 50},
    score_adapter="scoremodels.adapters:active_particles",
)
