"""d-dimensional linear (Ornstein–Uhlenbeck) SDE, the validation system of the EPR estimators.

Each of the ``n`` independent copies ("atoms") follows::

    dx = −B x dt + √(2D) dW,     x ∈ R^d,

with B (d×d, every eigenvalue with positive real part, so that a stationary state exists)
and D (d×d, symmetric positive semi-definite) given as nested lists. The stationary
density is the Gaussian N(0, C) with BC + CBᵀ = 2D (Lyapunov), and the entropy production
rate of one copy (k_B = 1, all coordinates even under time reversal) is
Σ̇ = tr(Bᵀ D⁻¹ B C) − tr B (see :func:`simcore.exact.ou_epr`). Units: x and time are dimensionless;
B is a rate (1/time), D a diffusion matrix (x²/time).

Integrators
-----------
``integrator = "exact"`` (default) samples the transition density exactly:
x' = A x + F ξ with A = e^{−B dt}, F Fᵀ = Σ_dt = ∫₀^dt e^{−Bs} 2D e^{−Bᵀs} ds (Van Loan's
block exponential, computed once in Python), ξ ~ N(0, I_d); any dt is exact.
``integrator = "euler"`` is Euler–Maruyama: A = I − B dt, F Fᵀ = 2D dt (first order in dt;
its stationary covariance differs from C by O(dt)).

Initial state: ``init = "stationary"`` draws x ~ N(0, C) (PCG64 from the seed) so every
frame is a stationary sample; ``init = "zero"`` starts at x = 0.

File layout (AMBER NetCDF, see docs/models/linear.md)
-------------------------------------------------------
* ``x(frame, atom, component)`` — the full state, ``component`` = 0..d−1;
* ``drift(frame, atom, component)`` — the deterministic drift b = −B x of each copy;
* ``coordinates(frame, atom, spatial)`` — x_0..x_{min(d,3)−1}, zero-padded to 3;
* no ``velocities`` (an Ornstein–Uhlenbeck path has no velocity; MD readers would take
  the drift for one); use ``drift``;
* ``cell_lengths`` = (0, 0, 0) (not periodic; ``format = "amber"`` files leave the cell
  out). ``simcore_ndim`` is min(d, 3), the number of components ``coordinates`` holds
  (the padding convention of the 2D models; the axes beyond it are ``none`` in
  ``simcore_boundary``); the state dimension d is the size of ``component`` (``simcore
  info`` reports it).

Randomness is counter-based (:mod:`simcore.rng`): noise component k of copy i at step s
is a pure function of (seed, s, i, k), so results do not depend on the thread count and
``--resume`` is bit-identical.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numba import njit, prange
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simcore import exact, rng
from simcore.engine import Engine

NAME = "linear"
NDIM = 3
HAS_VELOCITIES = False  # an OU path has no velocity: the drift is stored as `drift`
MAX_DIM = 256  # a harmonic network of 64 AOUPs in 2D: (x, g) of 4·64 components
DEFAULT_STEPS = 50000
DEFAULT_WRITE_EVERY = 50
DEFAULT_PRESET = "rotational_ou"
MAX_ENTRY = 1e100  # largest |B_ij|, |D_ij| (x ~ √(D/B) and B·x stay far from overflow)
_PARALLEL_MIN_WORK = 2000  # n·d²·steps below which a prange launch costs more than it saves


def _as_matrix(name: str, value) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(
            f"{name} must be a square d×d matrix given as a nested list, e.g. "
            f"{name} = [[1.0, 0.0], [0.0, 1.0]] (got shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite entries")
    if np.abs(a).max() > MAX_ENTRY:
        raise ValueError(
            f"{name} has entries beyond {MAX_ENTRY:.0e} in magnitude (largest "
            f"{np.abs(a).max():.3g}): products such as B·x and the noise covariance would "
            "overflow float64; rescale the time and length units")
    return a


class Params(BaseModel):
    """Parameters of the linear SDE dx = −Bx dt + √(2D) dW (dimensionless units)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    B: list[list[float]] = Field(
        [[1.3, -0.7], [0.7, 1.3]],
        description="drift matrix (d×d, rate units); eigenvalues need a positive real part")
    D: list[list[float]] = Field(
        [[1.0, 0.0], [0.0, 1.0]],
        description="diffusion matrix (d×d, symmetric positive semi-definite)")
    n: int = Field(1000, ge=1, le=100_000_000, description="number of independent copies")
    dt: float = Field(0.01, gt=0, description="time step")
    integrator: Literal["exact", "euler"] = Field(
        "exact", description="exact transition sampling or Euler–Maruyama")
    init: Literal["stationary", "zero"] = Field(
        "stationary", description="start from the stationary Gaussian N(0, C) or from x = 0")

    @model_validator(mode="after")
    def _consistent(self):
        B = _as_matrix("B", self.B)
        D = _as_matrix("D", self.D)
        d = B.shape[0]
        if D.shape != B.shape:
            raise ValueError(f"B is {d}×{d} but D is {D.shape[0]}×{D.shape[1]}; they must have "
                             "the same size d")
        if d > MAX_DIM:
            raise ValueError(f"the state dimension d = {d} exceeds the supported {MAX_DIM}")
        scale = max(np.abs(D).max(), 1e-300)
        if np.abs(D - D.T).max() > 1e-12 * scale:
            raise ValueError("D must be symmetric (D = Dᵀ)")
        w = np.linalg.eigvalsh(0.5 * (D + D.T))
        if w.min() < -1e-12 * scale:
            raise ValueError(f"D must be positive semi-definite (its smallest eigenvalue is "
                             f"{w.min():.6g})")
        lam = np.linalg.eigvals(B)
        if lam.real.min() <= 1e-12 * max(1.0, np.abs(B).max()):
            raise ValueError(
                "every eigenvalue of B must have a positive real part, otherwise dx = −Bx dt + "
                f"√(2D) dW has no stationary state (eigenvalues of B: "
                f"{', '.join(f'{z:.4g}' for z in np.round(lam, 12))})")
        if self.integrator == "euler":
            rho = np.abs(np.linalg.eigvals(np.eye(d) - self.dt * B)).max()
            if rho >= 1.0:
                raise ValueError(
                    f"Euler–Maruyama is unstable at dt = {self.dt} for this B (spectral radius "
                    f"of I − B dt = {rho:.4g} ≥ 1); reduce dt or use integrator = 'exact'")
        return self

    @property
    def d(self) -> int:
        """State dimension."""
        return len(self.B)

    @property
    def B_matrix(self) -> np.ndarray:
        return np.asarray(self.B, dtype=float)

    @property
    def D_matrix(self) -> np.ndarray:
        return np.asarray(self.D, dtype=float)


def _psd_factor(S: np.ndarray) -> np.ndarray:
    """F with F Fᵀ = S for a symmetric positive semi-definite S (Cholesky, else eigh)."""
    S = 0.5 * (S + S.T)
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(S)
        return V * np.sqrt(np.clip(w, 0.0, None))


def transition(params: Params) -> tuple[np.ndarray, np.ndarray]:
    """(A, F) of the one-step update x' = A x + F ξ, ξ ~ N(0, I_d)."""
    from scipy.linalg import expm

    B, D, dt, d = params.B_matrix, params.D_matrix, params.dt, params.d
    if params.integrator == "euler":
        return np.eye(d) - dt * B, _psd_factor(2.0 * dt * D)
    # Van Loan (1978): expm([[B, 2D], [0, −Bᵀ]] dt) = [[., G12], [0, G22]],
    # A = G22ᵀ = e^{−B dt}, Σ_dt = A G12
    M = np.zeros((2 * d, 2 * d))
    M[:d, :d] = B
    M[:d, d:] = 2.0 * D
    M[d:, d:] = -B.T
    G = expm(M * dt)
    A = G[d:, d:].T
    cov = A @ G[:d, d:]
    return A, _psd_factor(cov)


# --------------------------------------------------------------------------- model contract
_docs = ("rotational OU: B = [[κ, −ω], [ω, κ]], D = T I with κ = 1.3, ω = 0.7, T = 1; "
         "Σ̇ = 2ω²/κ = 0.753846")


_BS_B, _BS_D = (m.tolist() for m in exact.bead_spring(5, 10.0, 1.0))
PRESETS: dict[str, dict] = {
    "rotational_ou": dict(B=[[1.3, -0.7], [0.7, 1.3]], D=[[1.0, 0.0], [0.0, 1.0]], n=1000,
                          dt=0.01, steps=50000, write_every=50),
    "bead_spring_5": dict(B=_BS_B, D=_BS_D, n=1000, dt=0.01, steps=100000, write_every=100),
}
PRESET_DOCS = {
    "rotational_ou": _docs,
    "bead_spring_5": "5 beads, springs k = 1 to fixed walls and neighbours, friction γ = 1, "
                     "bath temperatures linear from T₁ = 10 to T₂ = 1; Σ̇ = 0.629817",
}


def time_per_step(params: Params) -> float:
    return params.dt


def warnings(params: Params) -> list[str]:
    out = []
    if params.integrator == "euler":
        rate = np.abs(np.linalg.eigvals(params.B_matrix)).max()
        if rate * params.dt > 0.05:
            out.append(f"Euler–Maruyama with dt·max|eig B| = {rate * params.dt:.3g}: the "
                       "stationary covariance is biased by O(dt); integrator = 'exact' is not")
    return out


def geometry(params: Params) -> dict:
    """Global attributes of the container: none (x lives in R^d); the ``coordinates``
    axes beyond the d components are padding (``none``), and ``simcore_ndim`` is the
    number of components the coordinates hold, min(d, 3)."""
    m = min(params.d, 3)
    return {"simcore_boundary": " ".join(["open"] * m + ["none"] * (3 - m)),
            "simcore_ndim": np.int32(m)}


def extra_variables(params: Params) -> dict:
    """The full state ``x`` and drift ``drift`` = −Bx, both (atom, component) with d components."""
    dims = {"component": params.d}
    return {
        "x": (("atom", "component"), "1", "state vector x of each independent copy", dims),
        "drift": (("atom", "component"), "1",
                  "deterministic drift b = -B x of each copy (model units per time unit)", dims),
    }


def init_state(params: Params, seed: int) -> dict[str, np.ndarray]:
    """x (n, d): stationary Gaussian N(0, C) from a PCG64 generator, or zeros."""
    n, d = params.n, params.d
    if params.init == "zero":
        return {"x": np.zeros((n, d))}
    F = _psd_factor(exact.stationary_covariance(params.B_matrix, params.D_matrix))
    g = np.random.default_rng(seed)
    return {"x": g.standard_normal((n, d)) @ F.T}


@njit(cache=True, inline="always")
def _step_one(i, x, y, z, A, F, key, step):
    d = x.shape[1]
    base = rng.stream_base(key, step, i)
    for k in range(0, d, 2):
        a, b = rng.normal_pair(base, 2 * k)
        z[i, k] = a
        if k + 1 < d:
            z[i, k + 1] = b
    for r in range(d):
        acc = 0.0
        for c in range(d):
            acc += A[r, c] * x[i, c]
        for c in range(d):
            acc += F[r, c] * z[i, c]
        y[i, r] = acc
    for r in range(d):
        x[i, r] = y[i, r]


# The copies are independent: each thread advances its copies through all the chunks of
# a call (one parallel region per call, no barrier per step or chunk); the noise depends
# only on (step, copy). After chunk c, copy i's state is kept in kept[c, i].
@njit(cache=True, parallel=True, nogil=True)  # nogil: other Python threads run meanwhile
def _chunks_parallel(x, y, z, A, F, key, step0, n_steps, n_chunks, kept):
    for i in prange(x.shape[0]):
        _copy_chunks(i, x, y, z, A, F, key, step0, n_steps, n_chunks, kept)


@njit(cache=True, nogil=True)
def _chunks_serial(x, y, z, A, F, key, step0, n_steps, n_chunks, kept):
    for i in range(x.shape[0]):
        _copy_chunks(i, x, y, z, A, F, key, step0, n_steps, n_chunks, kept)


@njit(cache=True, inline="always")
def _copy_chunks(i, x, y, z, A, F, key, step0, n_steps, n_chunks, kept):
    for c in range(n_chunks):
        for s in range(n_steps):
            _step_one(i, x, y, z, A, F, key, step0 + c * n_steps + s)
        for r in range(x.shape[1]):
            kept[c, i, r] = x[i, r]


@njit(cache=True, nogil=True)
def _first_runaway(states, limit):
    """Index of the first row of ``states`` holding a value that is not finite or exceeds
    ``limit`` in magnitude, else -1 (one pass, no temporaries)."""
    for c in range(states.shape[0]):
        for v in states[c]:
            if not abs(v) <= limit:  # NaN fails the comparison too
                return c
    return -1


def _work(state, params: Params):
    work = state.get("_work")
    if work is None or work["y"].shape != state["x"].shape:
        with np.errstate(over="ignore", invalid="ignore"):  # checked in advance()
            A, F = transition(params)
        work = {"A": np.ascontiguousarray(A), "F": np.ascontiguousarray(F),
                "y": np.zeros_like(state["x"]), "z": np.zeros_like(state["x"])}
        state["_work"] = work
    return work


def kernel_threads(params: Params, n_steps: int, threads: int | None = None) -> int:
    """Threads :func:`advance` computes on by default for ``n_steps`` steps at a time, at
    ``threads`` (default: Numba's thread count): all of them when n·d²·n_steps reaches
    2000, else one."""
    import numba

    threads = numba.get_num_threads() if threads is None else threads
    return (threads if params.n * params.d ** 2 * n_steps >= _PARALLEL_MIN_WORK and threads > 1
            else 1)


def advance(state, params: Params, key, step: int, n_steps: int, parallel: bool | None = None) -> None:
    """Advance every copy in place by ``n_steps`` steps from global step ``step``."""
    advance_frames(state, params, key, step, n_steps, 1, parallel=parallel)


def advance_frames(state, params: Params, key, step: int, n_steps: int, n_chunks: int, *,
                   parallel: bool | None = None) -> dict[str, np.ndarray]:
    """Advance every copy in place by ``n_chunks`` chunks of ``n_steps`` steps in one
    kernel call and return the state after each chunk, stacked: ``x`` (chunks, n, d), a
    view of a work array valid until the next call (for the driver's frames). The same
    bits as ``n_chunks`` calls of :func:`advance` (each copy takes the same steps in the
    same order). ``parallel``: threads over the copies (default: :func:`kernel_threads`
    of one chunk).

    Raises :class:`UnstableRunError` naming the first chunk whose state is not finite or
    exceeds :data:`MAX_STATE`; its ``good_states`` holds the states before it."""
    work = _work(state, params)
    if parallel is None:
        parallel = kernel_threads(params, n_steps) > 1
    if not (np.isfinite(work["A"]).all() and np.isfinite(work["F"]).all()):
        from simcore._errors import UnstableRunError

        raise UnstableRunError(
            f"The linear SDE cannot be integrated from step {step}: the one-step transition "
            f"(A = e^(-B dt) and the noise factor F with dt = {params.dt:g}) is not finite in "
            "float64. " + stability_advice(params), first_step=step, last_step=step)
    x = state["x"]
    kept = work.get("kept")
    if kept is None or kept.shape[0] < n_chunks:
        kept = work["kept"] = np.empty((n_chunks, *x.shape))
    kept = kept[:n_chunks]
    fn = _chunks_parallel if parallel else _chunks_serial
    fn(x, work["y"], work["z"], work["A"], work["F"], np.uint64(key), np.int64(step),
       np.int64(n_steps), np.int64(n_chunks), kept)
    c = _first_runaway(kept.reshape(n_chunks, -1), MAX_STATE)
    if c >= 0:
        from simcore._errors import UnstableRunError

        first = step + c * n_steps
        err = UnstableRunError(
            f"The linear SDE became unstable before step {first + n_steps} (in the chunk of "
            f"steps {first}..{first + n_steps}): the state is no longer finite or exceeds "
            f"{MAX_STATE:.0e}. " + stability_advice(params), first_step=first,
            last_step=first + n_steps)
        err.good_states = {"x": kept[:c]}
        raise err
    return {"x": kept}


# A state beyond this magnitude is a runaway (x² overflows at 1e154; the float32 file at
# 3e38): the stationary spread √(max eig C) of any sensible run is far below it.
MAX_STATE = 1e30


def stability_advice(params: Params) -> str:
    """Advice for a runaway linear run that fits its integrator, dt and B, D."""
    B, D = params.B_matrix, params.D_matrix
    rate = float(np.abs(np.linalg.eigvals(B)).max())
    noise = float(np.abs(D).max())
    if params.integrator == "euler":
        good = 0.1 / rate if rate > 0 else params.dt
        return (f"Euler–Maruyama with dt = {params.dt:g} and max|eig B| = {rate:.3g} "
                f"(dt·max|eig B| = {params.dt * rate:.3g}): rerun with dt <= {good:.2g} or "
                "with integrator = 'exact', which is stable for any dt.")
    if rate * params.dt > 100.0:
        return (f"dt·max|eig B| = {params.dt * rate:.3g}: the exact transition is computed "
                "from exp(±B dt), which overflows float64 beyond about 700. Rerun with dt <= "
                f"{100.0 / rate:.2g} (frames a few relaxation times apart are independent "
                "anyway) and steps and write_every raised to cover the same time.")
    return (f"The exact integrator is stable for any dt, so the scales are the problem: "
            f"max|eig B| = {rate:.3g}, max|D| = {noise:.3g}, dt = {params.dt:g}. Rescale time "
            "and lengths so that the entries of B·dt and D·dt are of moderate size (e.g. "
            "below 1e100).")


def state_from_frame(variables: dict[str, np.ndarray], params: Params) -> dict[str, np.ndarray]:
    """The state of a stored frame (``simcore run --init-from``): the full x (n, d)."""
    from simcore._errors import UserInputError

    x = np.array(variables["x"], dtype=np.float64)
    if x.shape != (params.n, params.d) or not np.isfinite(x).all():
        raise UserInputError(f"init_from: the stored x has shape {x.shape} (or non-finite "
                             f"values); this run needs finite ({params.n}, {params.d}).")
    return {"x": x}


def frame(state, params: Params) -> dict[str, np.ndarray]:
    """Per-frame variables (see the module docstring for the layout); ``state["x"]`` may
    be stacked states (chunks, n, d) from :func:`advance_frames`."""
    x, BT = state["x"], params.B_matrix.T
    if x.ndim == 3:  # each frame's drift from the same 2D product as a single frame's
        drift = np.empty_like(x)
        for k in range(len(x)):
            drift[k] = -x[k] @ BT
    else:
        drift = -x @ BT
    m = min(params.d, 3)
    coords = np.zeros((*x.shape[:-1], 3))
    coords[..., :m] = x[..., :m]
    return {"coordinates": coords, "cell_lengths": np.zeros(3), "x": x, "drift": drift}


def run_bytes(params: Params) -> tuple[int, int]:
    """Peak bytes of the state, work arrays and one frame, and the floats per copy in a
    frame (for the memory check before a run)."""
    n, d = params.n, params.d
    state = 8 * n * d
    work = 16 * n * d  # y, z
    frame_bytes = 16 * n * d + 48 * n  # drift (and −x Bᵀ temporary), padded coordinates
    init = 16 * n * d  # stationary draw and its product
    return state + work + max(frame_bytes, init), 2 * d + 6


def analysis_bytes(n_atoms: int, n_frames: int, params: Params | None = None) -> int:
    """Peak bytes of the linear diagnostics: the states x and drifts of all frames after
    burn-in, (frames, N, d) twice."""
    d = params.d if params is not None else 3
    return 2 * 8 * n_frames * n_atoms * d + 2 * 8 * n_atoms * d * 4


ENGINE = Engine(
    name=NAME, ndim=NDIM, Params=Params, presets=PRESETS, preset_docs=PRESET_DOCS,
    description="linear stochastic differential equations (Ornstein-Uhlenbeck processes)",
    default_preset=DEFAULT_PRESET, default_steps=DEFAULT_STEPS,
    default_write_every=DEFAULT_WRITE_EVERY,
    init_state=init_state, advance=advance, advance_frames=advance_frames, frame=frame,
    state_from_frame=state_from_frame,
    extra_variables=extra_variables, time_per_step=time_per_step, warnings=warnings,
    geometry=geometry, has_velocities=HAS_VELOCITIES,
    run_bytes=run_bytes, analysis_bytes=analysis_bytes, kernel_threads=kernel_threads,
    analysis="simcore.analysis.linear:linear_diagnostics",
    figure="simcore.plotting.linear:figure", animation="simcore.plotting.linear:animate",
    quick_run={"n": 500, "steps": 2000, "write_every": 200},
    score_adapter="scoremodels.adapters:linear_sde",
)
