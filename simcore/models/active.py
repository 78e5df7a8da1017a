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
from typing import Literal

import numpy as np
from numba import njit, prange
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simcore.engine import Engine
from simcore.models import box_corner
from simcore import neighbors, rng

NAME = "abp"
NDIM = 2
HAS_VELOCITIES = False  # overdamped: the file stores the drift as `drift`, not `velocities`
DEFAULT_STEPS = 20000
DEFAULT_WRITE_EVERY = 200
DEFAULT_PRESET = None
_PARALLEL_MIN_N = 512
WCA_RANGE = 2.0 ** (1.0 / 6.0)

POTENTIALS = {"none": 0, "wca": 1, "soft_harmonic": 2}
# float parameters whose products the kernels form: kept within 1e-100..1e100 (or 0)
_SCALED = ("dt", "v0", "D_t", "D_r", "mu", "gamma", "sigma", "epsilon_lj", "k", "beta",
           "radius", "kappa")


class Params(BaseModel):
    """Parameters of the 2D active-particle model (lengths in σ or r₀, time in model units)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    n: int = Field(1024, ge=1, le=100_000_000, description="number of particles")
    phi: float = Field(0.4, gt=0, lt=0.9069, description="packing fraction N π a² / L²")
    dt: float = Field(1e-4, gt=0, description="time step")
    propulsion: Literal["abp", "aoup"] = Field("abp")
    v0: float = Field(24.0, ge=0, description="self-propulsion speed (ABP) or scale (AOUP)")
    D_t: float = Field(0.24, ge=0, description="translational diffusion coefficient")
    D_r: float = Field(0.72, ge=0, description="rotational diffusion coefficient (ABP)")
    mu: float = Field(1.0, gt=0, description="mobility")
    gamma: float = Field(1.0, gt=0, description="OU relaxation rate of g (AOUP)")
    potential: Literal["wca", "soft_harmonic", "none"] = Field("wca")
    sigma: float = Field(1.0, gt=0, description="WCA diameter")
    epsilon_lj: float = Field(1.0, gt=0, description="WCA energy scale")
    k: float = Field(1.0, gt=0, description="soft-disc stiffness")
    beta: float = Field(7.5, gt=0, description="softplus sharpness of the soft disc")
    radius: float = Field(1.0, gt=0, description="soft-disc radius r0")
    cutoff: float | None = Field(
        None, gt=0, description="soft-disc force cutoff (default 4·radius); WCA uses 2^(1/6)σ"
    )
    kappa: float = Field(0.0, ge=0, description="harmonic trap stiffness about the box centre")
    noise: Literal["gaussian", "uniform"] = Field(
        "gaussian", description="translational noise: Gaussian, or variance-matched uniform "
        "(weak order 1, cheaper)"
    )
    init: Literal["lattice", "uniform", "blob"] = Field(
        "lattice", description="square lattice, uniform random, or a Gaussian blob of s.d. L/4"
    )
    write_force: bool = Field(False, description="also write the pair+trap force per frame")
    write_drift: bool = Field(
        False, description="no effect, kept so that old configs stay valid: the drift "
        "b = v0 p + mu F is always written, as `drift` (files have no `velocities`)")

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        if self.potential == "wca" and self.cutoff is not None:
            problems.append("cutoff is fixed at 2^(1/6)·sigma for the WCA potential")
        if self.propulsion == "abp" and self.D_r == 0 and self.v0 > 0:
            problems.append("ABP needs D_r > 0")
        if self.potential == "soft_harmonic" and self.interaction_range <= 2 * self.radius:
            problems.append("the soft-disc cutoff must exceed the contact distance 2·radius")
        out_of_range = [f"{name} = {getattr(self, name):g}" for name in _SCALED
                        if getattr(self, name) and not 1e-100 <= getattr(self, name) <= 1e100]
        if out_of_range:
            problems.append(f"{', '.join(out_of_range)} outside 1e-100..1e100: products of the "
                            "parameters would leave float64's range; rescale the units")
        elif not problems:
            ratio = self.box / self.particle_radius
            if ratio > 1e12:
                problems.append(
                    f"the box is L = {self.box:.3g} = {ratio:.3g} particle radii wide; float64 "
                    "resolves positions to 1e-16 of that, so contacts need a box below 1e12 "
                    "radii: use a higher phi or fewer particles")
            else:
                step = self.v0 * self.dt + 5.0 * math.sqrt(2.0 * self.D_t * self.dt)
                if step >= self.box / 2:
                    problems.append(
                        f"one step moves a particle by about v0·dt + 5√(2 D_t dt) = {step:.3g}, "
                        f"more than half the periodic box (L/2 = {self.box / 2:.3g}), so "
                        "neither collisions nor displacements are resolved: reduce dt")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def particle_radius(self) -> float:
        return self.radius if self.potential == "soft_harmonic" else self.sigma / 2

    @property
    def box(self) -> float:
        """Side L of the periodic square box."""
        return math.sqrt(self.n * math.pi * self.particle_radius ** 2 / self.phi)

    @property
    def interaction_range(self) -> float:
        if self.potential == "wca":
            return WCA_RANGE * self.sigma
        if self.potential == "soft_harmonic":
            return self.cutoff if self.cutoff is not None else 4.0 * self.radius
        return 0.0

    @property
    def peclet(self) -> float:
        """Pe = 3 v0 / (σ D_r) (ABP), or 3 v0 / (σ γ) for AOUP."""
        rate = self.D_r if self.propulsion == "abp" else self.gamma
        return 3 * self.v0 / (2 * self.particle_radius * rate) if rate > 0 else math.inf


_BENCH = dict(potential="wca", sigma=1.0, epsilon_lj=1.0, mu=1.0, v0=24.0)
PRESETS: dict[str, dict] = {
    # Pe = 3 v0/(σ D_r) with D_t = D_r σ²/3 and F_a = v0 = 24 ε/σ (as in the benchmark system)
    "mips": dict(_BENCH, n=4096, phi=0.6, D_t=0.16, D_r=0.48, dt=1e-4, steps=200000,
                 write_every=2000),
    # same thermal noise, slower swimmers: Pe = 3 · 1.6 / 0.48 = 10
    "homogeneous": dict(_BENCH, n=4096, phi=0.6, D_t=0.16, D_r=0.48, v0=1.6, dt=1e-4,
                        steps=200000, write_every=2000),
    "boffi2023": dict(propulsion="aoup", potential="soft_harmonic", n=4096, phi=0.5, v0=0.025,
                      gamma=1e-4, dt=0.1, D_t=0.0, k=1.0, beta=7.5, radius=1.0, mu=1.0,
                      init="blob", steps=100000, write_every=100),
    "free_abp": dict(potential="none", n=2000, phi=0.1, v0=1.0, D_t=0.1, D_r=0.5, dt=1e-2,
                     init="uniform", steps=2000, write_every=10),
    "trapped_abp": dict(potential="none", n=2000, phi=0.01, v0=1.0, D_t=0.25, D_r=0.4,
                        kappa=0.7, dt=2e-3, init="uniform", steps=50000, write_every=50),
}
PRESET_DOCS = {
    "mips": "ABP + WCA at φ = 0.6, Pe = 150 (deep in the MIPS region)",
    "homogeneous": "ABP + WCA at φ = 0.6, Pe = 10 (homogeneous fluid)",
    "boffi2023": "AOUP + soft discs, the MIPS set of Boffi & Vanden-Eijnden (ε = 0)",
    "free_abp": "non-interacting ABP (closed-form MSD)",
    "trapped_abp": "non-interacting ABP in a harmonic trap (closed-form moments and EPR)",
}


def time_per_step(params: Params) -> float:
    return params.dt


def warnings(params: Params) -> list[str]:
    out = []
    if params.potential == "wca" and params.init == "uniform" and params.phi > 0.3:
        out.append("uniform random positions overlap strongly at this packing fraction; the "
                   "WCA forces will be huge at first (use init='lattice')")
    return out


def geometry(params: Params) -> dict:
    """Global attributes of the container: the periodic square [0, L)² (see
    :func:`simcore.models.couzin.geometry`)."""
    return {"simcore_boundary": "periodic periodic none", "simcore_box_lo": box_corner(0.0, 0.0, 0.0),
            "simcore_box_hi": box_corner(params.box, params.box, 0.0)}


def extra_variables(params: Params) -> dict:
    """Angles (ABP) or propulsion vectors (AOUP), periodic images, the drift, and optionally
    forces. There is no AMBER ``velocities`` variable: an overdamped particle has no
    velocity, and readers (OVITO, ASE, MDAnalysis) would take the drift for one."""
    out = {}
    if params.propulsion == "abp":
        out["theta"] = (("atom",), "radian", "propulsion angle θ (n = (cos θ, sin θ))")
    else:
        out["propulsion"] = (("atom", "spatial"), "1", "AOUP propulsion vector g (z = 0)")
    out["image"] = (("atom", "spatial"), "1",
                    "periodic image counts: unwrapped = coordinates + image * cell_lengths")
    if params.write_force:
        out["force"] = (("atom", "spatial"), "1",
                        "pair + trap force F_i (model units; drift = v0 n + mu F)")
    out["drift"] = (("atom", "spatial"), "1",
                    "deterministic drift b = v0 p + mu F (model length per time unit; not a "
                    "velocity: the overdamped motion adds sqrt(2 D_t) dW)")
    return out


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


# ---------------------------------------------------------------------------- kernels
@njit(cache=True, inline="always")
def _pair_force(r2, pot, sig2, eps24, rc2, k, beta, contact):
    """Magnitude φ(r)/r of the pair force (F_ij = φ/r · r_ij) and φ'(r) for r² = r2 < rc²."""
    if pot == 1:
        s6 = (sig2 / r2) ** 3
        return eps24 * (2.0 * s6 * s6 - s6) / r2
    r = math.sqrt(r2)
    u = beta * (contact - r)
    softplus = max(u, 0.0) + math.log1p(math.exp(-abs(u)))
    return k * softplus / beta / r


@njit(cache=True, inline="always")
def _pair_divergence(r2, pot, sig2, eps24, k, beta, contact):
    """∇_i·(φ(r) r̂) = φ'(r) + φ(r)/r in 2D, for the exact score-free EPR."""
    r = math.sqrt(r2)
    if pot == 1:
        s6 = (sig2 / r2) ** 3
        phi = eps24 * (2.0 * s6 * s6 - s6) / r
        dphi = -eps24 * (26.0 * s6 * s6 - 7.0 * s6) / r2
        return dphi + phi / r
    u = beta * (contact - r)
    softplus = max(u, 0.0) + math.log1p(math.exp(-abs(u)))
    sigmoid = 1.0 / (1.0 + math.exp(-u))
    return -k * sigmoid + k * softplus / beta / r


@njit(cache=True)
def _gather(pos, order, xs, ys):
    for t in range(order.shape[0]):
        j = order[t]
        xs[t] = pos[j, 0]
        ys[t] = pos[j, 1]


@njit(cache=True, inline="always")
def _force_on(i, pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot, sig2, eps24,
              rc2, k, beta, contact, want_div):
    """Pair force on particle i (and optionally its divergence), cell order, no branches
    on the pair test."""
    mask = bucket_start.shape[0] - 2
    px, py = pos[i, 0], pos[i, 1]
    fx = fy = div = 0.0
    one_cell = ncell[0] == 1
    inv_L = 1.0 / L
    for ox in range(-reach[0], reach[0] + 1):
        cx, sx = neighbors.neighbor_cell(cell_of[i, 0], ox, ncell[0], L)
        for oy in range(-reach[1], reach[1] + 1):
            cy, sy = neighbors.neighbor_cell(cell_of[i, 1], oy, ncell[1], L)
            b = neighbors.cell_hash(cx, cy, 0, mask)
            tkey = (cx << 32) | (cy & 0xFFFFFFFF)
            for t in range(bucket_start[b], bucket_start[b + 1]):
                dx = px - (xs[t] + sx)
                dy = py - (ys[t] + sy)
                if one_cell:
                    dx -= L * np.floor(dx * inv_L + 0.5)
                    dy -= L * np.floor(dy * inv_L + 0.5)
                r2 = dx * dx + dy * dy
                ok = (keys[t] == tkey) & (r2 < rc2) & (r2 > 0.0)
                f = _pair_force(r2 if ok else rc2 * 0.5, pot, sig2, eps24, rc2, k, beta, contact)
                f = f if ok else 0.0
                fx += f * dx
                fy += f * dy
                if want_div:
                    dv = _pair_divergence(r2 if ok else rc2 * 0.5, pot, sig2, eps24, k, beta,
                                          contact)
                    div += dv if ok else 0.0
    return fx, fy, div


@njit(cache=True)
def _keys(cell_of, order, keys):
    for t in range(order.shape[0]):
        j = order[t]
        keys[t] = (cell_of[j, 0] << 32) | (cell_of[j, 1] & 0xFFFFFFFF)


@njit(cache=True, inline="always")
def _row_range(i_t, lo, hi, px, py, sx, sy, xs, ys, pot, sig2, eps24, rc2, k, beta, contact,
               want_div, acc):
    """Accumulate the force of candidates [lo, hi) (shifted by sx, sy) on a particle."""
    fx, fy, div = acc
    for t in range(lo, hi):
        dx = px - (xs[t] + sx)
        dy = py - (ys[t] + sy)
        r2 = dx * dx + dy * dy
        if r2 < rc2 and t != i_t:
            f = _pair_force(r2, pot, sig2, eps24, rc2, k, beta, contact)
            fx += f * dx
            fy += f * dy
            if want_div:
                div += _pair_divergence(r2, pot, sig2, eps24, k, beta, contact)
    return fx, fy, div


@njit(cache=True, inline="always")
def _grid_force_on(t_i, nc, L, cell_start, xs, ys, pot, sig2, eps24, rc2, k, beta, contact,
                   want_div, side):
    """Force on the particle at sorted index t_i: three row ranges of three cells each."""
    px, py = xs[t_i], ys[t_i]
    inv = 1.0 / side
    cx = min(max(int(px * inv), 0), nc - 1)
    cy = min(max(int(py * inv), 0), nc - 1)
    acc = (0.0, 0.0, 0.0)
    for oy in range(-1, 2):
        ry, sy = neighbors.neighbor_cell(cy, oy, nc, L)
        row = ry * nc
        if 0 < cx < nc - 1:
            acc = _row_range(t_i, cell_start[row + cx - 1], cell_start[row + cx + 2], px, py,
                             0.0, sy, xs, ys, pot, sig2, eps24, rc2, k, beta, contact, want_div,
                             acc)
        else:
            for ox in range(-1, 2):
                rx, sx = neighbors.neighbor_cell(cx, ox, nc, L)
                acc = _row_range(t_i, cell_start[row + rx], cell_start[row + rx + 1], px, py,
                                 sx, sy, xs, ys, pot, sig2, eps24, rc2, k, beta, contact,
                                 want_div, acc)
    return acc


@njit(cache=True, parallel=True)
def _grid_forces_parallel(order, nc, L, side, cell_start, xs, ys, pot, sig2, eps24, rc2, k,
                          beta, contact, force, div, want_div):
    for t in prange(order.shape[0]):
        fx, fy, dv = _grid_force_on(t, nc, L, cell_start, xs, ys, pot, sig2, eps24, rc2, k,
                                    beta, contact, want_div, side)
        i = order[t]
        force[i, 0], force[i, 1], div[i] = fx, fy, dv


@njit(cache=True)
def _grid_forces_serial(order, nc, L, side, cell_start, xs, ys, pot, sig2, eps24, rc2, k, beta,
                        contact, force, div, want_div):
    for t in range(order.shape[0]):
        fx, fy, dv = _grid_force_on(t, nc, L, cell_start, xs, ys, pot, sig2, eps24, rc2, k,
                                    beta, contact, want_div, side)
        i = order[t]
        force[i, 0], force[i, 1], div[i] = fx, fy, dv


@njit(cache=True, parallel=True, error_model="numpy")
def _verlet_forces_parallel(pos, L, nb, nb_count, pot, sig2, eps24, rc2, k, beta, contact, force):
    """Force on every particle from its full (index-sorted) Verlet list. Strict IEEE order,
    no fast-math: the sum over the pairs inside the cutoff is then the same whenever the
    list was built, which keeps resumed runs bit-identical. (The loop body is written out
    here: an inlined helper taking the arrays would add reference counting per particle.)
    """
    inv_L = 1.0 / L
    for i in prange(pos.shape[0]):
        px, py = pos[i, 0], pos[i, 1]
        fx = fy = 0.0
        for a in range(nb_count[i]):
            j = nb[i, a]
            dx = px - pos[j, 0]
            dy = py - pos[j, 1]
            dx -= L * math.floor(dx * inv_L + 0.5)
            dy -= L * math.floor(dy * inv_L + 0.5)
            r2 = dx * dx + dy * dy
            if r2 < rc2:
                f = _pair_force(r2, pot, sig2, eps24, rc2, k, beta, contact)
                fx += f * dx
                fy += f * dy
        force[i, 0], force[i, 1] = fx, fy


@njit(cache=True, error_model="numpy")
def _verlet_forces_serial(pos, L, nb, nb_count, pot, sig2, eps24, rc2, k, beta, contact, force):
    """Newton's third law over the upper half (j > i) of the index-sorted lists.

    Each pair is computed once and scattered to i (+) and j (−). Visiting i in
    increasing order, particle i receives its terms in increasing j, exactly the order of
    :func:`_verlet_forces_parallel`'s sum, and −(f·d) is the exact negation, so the forces are
    bit-identical to the threaded full-list kernel at half the pair work.
    """
    inv_L = 1.0 / L
    n = pos.shape[0]
    for i in range(n):
        force[i, 0] = 0.0
        force[i, 1] = 0.0
    for i in range(n):
        px, py = pos[i, 0], pos[i, 1]
        fx, fy = force[i, 0], force[i, 1]
        m = nb_count[i]
        a = m
        while a > 0 and nb[i, a - 1] > i:  # start of the j > i half (lists are short)
            a -= 1
        for b in range(a, m):
            j = nb[i, b]
            dx = px - pos[j, 0]
            dy = py - pos[j, 1]
            dx -= L * math.floor(dx * inv_L + 0.5)
            dy -= L * math.floor(dy * inv_L + 0.5)
            r2 = dx * dx + dy * dy
            if r2 < rc2:
                f = _pair_force(r2, pot, sig2, eps24, rc2, k, beta, contact)
                fx += f * dx
                fy += f * dy
                force[j, 0] -= f * dx
                force[j, 1] -= f * dy
        force[i, 0], force[i, 1] = fx, fy


_FAST = dict(fastmath={"reassoc", "contract", "arcp", "nsz"}, error_model="numpy")


@njit(cache=True, parallel=True, **_FAST)
def _forces_parallel(pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot, sig2,
                     eps24, rc2, k, beta, contact, force, div, want_div):
    for i in prange(pos.shape[0]):
        fx, fy, dv = _force_on(i, pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys,
                               pot, sig2, eps24, rc2, k, beta, contact, want_div)
        force[i, 0], force[i, 1], div[i] = fx, fy, dv


@njit(cache=True, **_FAST)
def _forces_serial(pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot, sig2, eps24,
                   rc2, k, beta, contact, force, div, want_div):
    for i in range(pos.shape[0]):
        fx, fy, dv = _force_on(i, pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys,
                               pot, sig2, eps24, rc2, k, beta, contact, want_div)
        force[i, 0], force[i, 1], div[i] = fx, fy, dv


@njit(cache=True)
def _compute_forces(pos, L, side, ncell, reach, cell_of, bucket_of, bucket_start, order, xs, ys,
                    keys, pot, sig2, eps24, rc2, k, beta, contact, kappa, force, div, want_div,
                    parallel, grid_nc):
    """Pair forces plus the trap −κ(x − L/2); and ∇·F if ``want_div``.

    With ``grid_nc`` >= 3 a direct row-major grid is used (three contiguous row ranges
    per particle); otherwise the general hashed cell list (small boxes: one cell).
    """
    n = pos.shape[0]
    if pot == 0:
        for i in range(n):
            force[i, 0] = force[i, 1] = div[i] = 0.0
    elif grid_nc >= 3:
        gside = L / grid_nc
        neighbors.build_grid2d(pos, grid_nc, gside, bucket_start, order, xs, ys)
        if parallel:
            _grid_forces_parallel(order, grid_nc, L, gside, bucket_start, xs, ys, pot, sig2,
                                  eps24, rc2, k, beta, contact, force, div, want_div)
        else:
            _grid_forces_serial(order, grid_nc, L, gside, bucket_start, xs, ys, pot, sig2, eps24,
                                rc2, k, beta, contact, force, div, want_div)
    else:
        neighbors.build(pos, side, ncell, cell_of, bucket_of, bucket_start, order)
        _gather(pos, order, xs, ys)
        _keys(cell_of, order, keys)
        if parallel:
            _forces_parallel(pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot,
                             sig2, eps24, rc2, k, beta, contact, force, div, want_div)
        else:
            _forces_serial(pos, L, ncell, reach, cell_of, bucket_start, xs, ys, keys, pot, sig2,
                           eps24, rc2, k, beta, contact, force, div, want_div)
    if kappa > 0.0:
        c = 0.5 * L
        for i in range(n):
            force[i, 0] -= kappa * (pos[i, 0] - c)
            force[i, 1] -= kappa * (pos[i, 1] - c)
            div[i] -= 2.0 * kappa


@njit(cache=True, inline="always")
def _step_particle(x0, x1, f0, f1, p0, p1, th, identity, key, step, L, dt, v0, mu, s_t, s_r,
                   decay, s_g, abp, uniform_noise, max_jump):
    """One Euler–Maruyama step of one particle; exact updates for θ (ABP) or g (AOUP).

    Scalars in, scalars out: Numba's inlining of a function that takes arrays adds
    reference counting per call, which doubled the cost of this loop. (p0, p1) is the AOUP
    propulsion g, or for ABP the carried orientation n = (cos θ, sin θ), rotated by each
    angle increment instead of recomputed (a sine and a cosine of a small angle are short
    series; it is reset from θ at every renumbering, so rounding cannot accumulate).
    ``s_t = √(2 D_t dt)``, ``s_r = √(2 D_r dt)``, ``decay = e^{−γ dt}``,
    ``s_g = √(1 − decay²)``. Returns the new (x0, x1), the image shifts, θ, (p0, p1) and
    whether a force moved the particle farther than ``max_jump`` (or to a non-finite place).
    """
    base = rng.stream_base(key, step, identity)  # noise follows the particle, not its slot
    if uniform_noise:  # variance-matched uniform: √3·(2u − 1) has unit variance
        w0 = 1.7320508075688772 * (2.0 * rng.uniform(base, 0) - 1.0)
        w1 = 1.7320508075688772 * (2.0 * rng.uniform(base, 1) - 1.0)
    else:
        w0, w1 = rng.normal(base, 0), rng.normal(base, 1)
    bad = not (abs(mu * f0 * dt) <= max_jump and abs(mu * f1 * dt) <= max_jump)
    y0, sh0 = _wrap(x0 + (v0 * p0 + mu * f0) * dt + s_t * w0, L)
    y1, sh1 = _wrap(x1 + (v0 * p1 + mu * f1) * dt + s_t * w1, L)
    if abp:
        delta = s_r * rng.normal(base, 2)
        th = th + delta
        if th < -math.pi or th >= math.pi:  # keep θ in [−π, π)
            th -= 2.0 * math.pi * math.floor((th + math.pi) / (2.0 * math.pi))
        if abs(delta) < 0.1:  # series exact to double precision (next term < 3e-17)
            z = delta * delta
            c = 1.0 - z * (0.5 - z * (1.0 / 24.0 - z * (1.0 / 720.0 - z * (1.0 / 40320.0))))
            sn = delta * (1.0 - z * (1.0 / 6.0 - z * (1.0 / 120.0 - z * (1.0 / 5040.0
                                                                        - z / 362880.0))))
        else:
            sn, c = rng.sincos(delta)
        q0, q1 = c * p0 - sn * p1, sn * p0 + c * p1
    else:
        q0 = decay * p0 + s_g * rng.normal(base, 2)
        q1 = decay * p1 + s_g * rng.normal(base, 3)
    return y0, y1, sh0, sh1, th, q0, q1, bad


@njit(cache=True, inline="always")
def _wrap(x, L):
    """x folded into [0, L) and the number of box lengths removed."""
    if 0.0 <= x < L:
        return x, 0
    shift = math.floor(x / L)
    x -= shift * L
    if x >= L:  # round-off can land exactly on L
        x -= L
        shift += 1.0
    return x, int(shift)


@njit(cache=True, parallel=True, error_model="numpy")
def _integrate_parallel(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r, gamma, abp,
                        uniform_noise, key, step, max_jump, unstable, ids):
    s_t, s_r = math.sqrt(2.0 * D_t * dt), math.sqrt(2.0 * D_r * dt)
    decay = math.exp(-gamma * dt)
    s_g = math.sqrt(1.0 - decay * decay)
    for i in prange(pos.shape[0]):
        th = theta[i] if abp else 0.0
        y0, y1, sh0, sh1, th, q0, q1, bad = _step_particle(
            pos[i, 0], pos[i, 1], force[i, 0], force[i, 1], g[i, 0], g[i, 1], th, ids[i], key,
            step, L, dt, v0, mu, s_t, s_r, decay, s_g, abp, uniform_noise, max_jump)
        pos[i, 0], pos[i, 1] = y0, y1
        image[i, 0] += sh0
        image[i, 1] += sh1
        g[i, 0], g[i, 1] = q0, q1
        if abp:
            theta[i] = th
        if bad:
            unstable[0] = 1


@njit(cache=True, error_model="numpy")
def _integrate_serial(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r, gamma, abp,
                      uniform_noise, key, step, max_jump, unstable, ids):
    """Serial twin of :func:`_integrate_parallel` (same arithmetic, same bits)."""
    s_t, s_r = math.sqrt(2.0 * D_t * dt), math.sqrt(2.0 * D_r * dt)
    decay = math.exp(-gamma * dt)
    s_g = math.sqrt(1.0 - decay * decay)
    for i in range(pos.shape[0]):
        th = theta[i] if abp else 0.0
        y0, y1, sh0, sh1, th, q0, q1, bad = _step_particle(
            pos[i, 0], pos[i, 1], force[i, 0], force[i, 1], g[i, 0], g[i, 1], th, ids[i], key,
            step, L, dt, v0, mu, s_t, s_r, decay, s_g, abp, uniform_noise, max_jump)
        pos[i, 0], pos[i, 1] = y0, y1
        image[i, 0] += sh0
        image[i, 1] += sh1
        g[i, 0], g[i, 1] = q0, q1
        if abp:
            theta[i] = th
        if bad:
            unstable[0] = 1


# fields of the Verlet-list status array work["status"] (compile-time constants in Numba)
ST_NEEDED_CAPACITY = 0  # neighbours per particle the lists needed when they overflowed
ST_LISTS_VALID = 1  # 1 while the lists match the particle slots, 0 forces a rebuild
N_STATUS = 2


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
        skin = VERLET_SKIN * 2 * params.particle_radius
        work["r_list"] = params.interaction_range + skin
        nv = neighbors.grid2d_shape(params.box, work["r_list"])
        if nv and params.potential != "none":
            work["grid_nc"] = nc = nv
            # neighbours within r_list at close packing (φ = 0.907), with room to spare; an
            # overflow enlarges the lists. int32 rows of ~16 keep the lists in cache.
            capacity = int(1.5 * 0.907 * (work["r_list"] / params.particle_radius) ** 2) + 4
            work["nb"] = np.zeros((n, capacity), dtype=np.int32)
        else:
            work["nb"] = np.zeros((0, 1), dtype=np.int32)
        work["nb_count"] = np.zeros(n, dtype=np.int64)
        work["ref"] = np.zeros((n, 2))
        work["status"] = np.zeros(N_STATUS, dtype=np.int64)  # ST_* fields
        if nc:
            work["bucket_start"] = np.zeros(max(nc * nc + 1, work["bucket_start"].shape[0]),
                                            dtype=np.int64)
        state["_work"] = work
    return work


def _force_args(params: Params):
    return (POTENTIALS[params.potential], params.sigma ** 2, 24.0 * params.epsilon_lj,
            params.interaction_range ** 2, params.k, params.beta, 2.0 * params.radius)


def forces(state, params: Params, divergence: bool = False, parallel: bool | None = None):
    """Forces F_i (N, 2) on the current positions (pair + trap) and, if asked, ∇_i·F_i (N,)."""
    import numba

    work = _work(state, params)
    _, side, ncell, reach = work["plan"]
    if parallel is None:
        parallel = params.n >= _PARALLEL_MIN_N and numba.get_num_threads() > 1
    _compute_forces(state["positions"], params.box, side, ncell, reach, work["cell_of"],
                    work["bucket_of"], work["bucket_start"], work["order"], work["xs"],
                    work["ys"], work["keys"], *_force_args(params), params.kappa, work["force"],
                    work["div"], divergence, parallel, work["grid_nc"])
    return work["force"].copy(), work["div"].copy()


@njit(cache=True)
def _run_steps(pos, image, theta, g, force, div, L, side, ncell, reach, cell_of, bucket_of,
               bucket_start, order, xs, ys, keys, pot, sig2, eps24, rc2, k, beta, contact, kappa,
               dt, v0, mu, D_t, D_r, gamma, abp, uniform_noise, key, step0, n_steps, parallel,
               max_jump, unstable, grid_nc, nb, nb_count, ref, r_list, status, ids):
    """Advance up to ``n_steps``; returns the number of steps done (fewer when the Verlet
    lists overflowed: ``status[ST_NEEDED_CAPACITY]`` then holds the capacity they need)."""
    use_verlet = nb.shape[0] == pos.shape[0] and pot != 0
    half_skin2 = 0.25 * (r_list - math.sqrt(rc2)) ** 2
    for s in range(n_steps):
        if use_verlet:
            if parallel:
                moved2 = neighbors.max_displacement2_parallel(pos, ref, L)
            else:
                moved2 = neighbors.max_displacement2(pos, ref, L)
            if status[ST_LISTS_VALID] == 0 or moved2 > half_skin2:
                if parallel:
                    largest = neighbors.build_verlet2d_parallel(
                        pos, L, grid_nc, L / grid_nc, bucket_start, order, xs, ys, r_list, nb,
                        nb_count, ref)
                else:
                    largest = neighbors.build_verlet2d(pos, L, grid_nc, L / grid_nc,
                                                       bucket_start, order, xs, ys, r_list, nb,
                                                       nb_count, ref)
                if largest > nb.shape[1]:
                    status[ST_NEEDED_CAPACITY] = largest
                    status[ST_LISTS_VALID] = 0
                    return s
                status[ST_LISTS_VALID] = 1
            if parallel:
                _verlet_forces_parallel(pos, L, nb, nb_count, pot, sig2, eps24, rc2, k, beta,
                                        contact, force)
            else:
                _verlet_forces_serial(pos, L, nb, nb_count, pot, sig2, eps24, rc2, k, beta,
                                      contact, force)
            if kappa > 0.0:
                c = 0.5 * L
                for i in range(pos.shape[0]):
                    force[i, 0] -= kappa * (pos[i, 0] - c)
                    force[i, 1] -= kappa * (pos[i, 1] - c)
        else:
            _compute_forces(pos, L, side, ncell, reach, cell_of, bucket_of, bucket_start, order,
                            xs, ys, keys, pot, sig2, eps24, rc2, k, beta, contact, kappa, force,
                            div, False, parallel, grid_nc)
        if parallel:
            _integrate_parallel(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r, gamma,
                                abp, uniform_noise, key, step0 + s, max_jump, unstable, ids)
        else:
            _integrate_serial(pos, image, theta, g, force, L, dt, v0, mu, D_t, D_r, gamma, abp,
                              uniform_noise, key, step0 + s, max_jump, unstable, ids)
        if unstable[0]:
            return s + 1
    return n_steps


def _max_jump(params: Params) -> float:
    """Largest force displacement per step that is still a resolved collision.

    WCA: a quarter of the diameter (beyond, the r^-13 wall makes explicit Euler blow up).
    Soft discs: a whole diameter (their force is bounded, about k per overlapping
    neighbour, so large first steps out of an overlapping start are harmless).
    Free particles: a quarter of the box (only an absurd trap κ·dt can reach it).
    """
    if params.potential == "wca":
        return 0.5 * params.particle_radius
    if params.potential == "soft_harmonic":
        return 2.0 * params.radius
    return 0.25 * params.box


SORT_EVERY = 1000  # steps between spatial renumberings of the particles
VERLET_SKIN = 0.3  # Verlet-list skin in particle diameters


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


def _identity_order(state, values):
    """``values`` (slot order) rearranged into particle-identity order."""
    ids = state.get("ids")
    if ids is None:
        return values
    out = np.empty_like(values)
    out[ids] = values
    return out


def advance(state, params: Params, key, step: int, n_steps: int, parallel: bool | None = None):
    """Advance ``state`` in place by ``n_steps`` steps from global step ``step``."""
    import numba

    work = _work(state, params)
    _, side, ncell, reach = work["plan"]
    if parallel is None:
        parallel = params.n >= _PARALLEL_MIN_N and numba.get_num_threads() > 1
    abp = params.propulsion == "abp"
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
        done += _run_steps(
            state["positions"], state["image"], theta, g, work["force"], work["div"], params.box,
            side, ncell, reach, work["cell_of"], work["bucket_of"], work["bucket_start"],
            work["order"], work["xs"], work["ys"], work["keys"], *_force_args(params),
            params.kappa, params.dt, params.v0, params.mu, params.D_t, params.D_r, params.gamma,
            abp, params.noise == "uniform", np.uint64(key), np.int64(now),
            np.int64(chunk), bool(parallel), _max_jump(params), unstable,
            work["grid_nc"], work["nb"], work["nb_count"], work["ref"], work["r_list"],
            work["status"], state["ids"])
        if unstable[0]:
            break
        needed = work["status"][ST_NEEDED_CAPACITY]
        if needed > work["nb"].shape[1]:  # lists overflowed: enlarge, rebuild
            work["nb"] = np.zeros((params.n, int(needed * 1.3) + 4), dtype=np.int32)
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


def force_scale(params: Params) -> float:
    """A rough upper scale of the pair + trap force on one particle (model units).

    WCA: the larger of the contact force 24 ε/σ and the pile-up of about six swimmers
    pushing with v0/μ each; soft discs: about six overlapping neighbours with the bounded
    force k·2r₀ each; plus the trap force κ·L/2 at the box edge.
    """
    if params.potential == "wca":
        f = max(24.0 * params.epsilon_lj / params.sigma, 6.0 * params.v0 / params.mu)
    elif params.potential == "soft_harmonic":
        f = 6.0 * params.k * 2.0 * params.radius
    else:
        f = 0.0
    return f + params.kappa * params.box / 2.0


def suggested_dt(params: Params) -> float:
    """A time step with which one step moves a particle by at most a tenth of the largest
    resolved jump (:func:`_max_jump`): (v0 + μF) dt + √(2 D_t dt) <= jump / 10, with F
    from :func:`force_scale`. Rounded down to one significant digit."""
    a = params.v0 + params.mu * force_scale(params)
    b = math.sqrt(2.0 * params.D_t)
    target = _max_jump(params) / 10.0
    if a <= 0.0:
        root = target / b if b > 0 else math.inf
    else:
        root = (-b + math.sqrt(b * b + 4.0 * a * target)) / (2.0 * a)
    dt = root * root
    if not math.isfinite(dt) or dt <= 0.0:
        return math.inf
    scale = 10.0 ** math.floor(math.log10(dt))
    return math.floor(dt / scale) * scale


def stability_advice(params: Params) -> str:
    """Advice for an unstable run that fits the parameters (potential, dt, force scale)."""
    good = suggested_dt(params)
    what = {"wca": f"the WCA repulsion (epsilon_lj = {params.epsilon_lj:g}, sigma = "
                   f"{params.sigma:g})",
            "soft_harmonic": f"the soft discs (k = {params.k:g}, radius = {params.radius:g})",
            "none": "free particles"}[params.potential]
    scale = (f"With {what}, v0 = {params.v0:g}, mu = {params.mu:g}, D_t = {params.D_t:g}"
             + (f" and a trap kappa = {params.kappa:g}" if params.kappa > 0 else "")
             + f", the force scale is about {force_scale(params):.3g}")
    if params.dt > good:
        return (f"{scale}, and dt = {params.dt:g} is too large for it: rerun with dt <= "
                f"{good:.1g} (a step then moves a particle by at most a tenth of "
                f"{_max_jump(params):g} length units), raising steps and write_every by the "
                "same factor to cover the same time.")
    hint = ""
    if params.potential == "wca" and params.init != "lattice":
        hint = (f" Random starts (init = '{params.init}') put WCA particles on top of each "
                "other, where the r^-13 force has no useful bound: use init = 'lattice'.")
    elif params.potential != "none" and params.phi > 0.6:
        hint = (f" At phi = {params.phi:g} the particles are compressed far into each other; "
                "a lower packing fraction is more forgiving.")
    return (f"{scale}; dt = {params.dt:g} is already at or below the dt <= {good:.1g} that it "
            "suggests, so the forces exceeded that scale (overlapping particles)." + hint
            + f" Try dt = {params.dt / 10:g} (with steps and write_every 10 times larger).")


def state_from_frame(variables: dict[str, np.ndarray], params: Params) -> dict[str, np.ndarray]:
    """The state of a stored frame (``simcore run --init-from``): positions wrapped into
    this run's box, image counts, and θ (ABP) or g (AOUP) from the stored extras."""
    from simcore._errors import UserInputError

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
    drift b = v0 p + μ F (no ``velocities``: see :func:`extra_variables`)."""
    force, _ = forces(state, params)
    if params.propulsion == "abp":
        p = np.stack([np.cos(state["theta"]), np.sin(state["theta"])], axis=1)
    else:
        p = state["g"]
    ordered = lambda a: _identity_order(state, a)  # noqa: E731
    drift = np.zeros((params.n, 3))
    drift[:, :2] = ordered(params.v0 * p + params.mu * force)
    out = {"coordinates": ordered(state["positions"]),
           "cell_lengths": np.array([params.box, params.box, 0.0])}
    if params.propulsion == "abp":
        out["theta"] = ordered(state["theta"])
    else:
        out["propulsion"] = np.concatenate([ordered(state["g"]), np.zeros((params.n, 1))],
                                           axis=1)
    out["image"] = np.concatenate([ordered(state["image"]), np.zeros((params.n, 1))], axis=1)
    if params.write_force:
        out["force"] = np.concatenate([ordered(force), np.zeros((params.n, 1))], axis=1)
    out["drift"] = drift
    return out


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
        work += 4 * capacity * n  # int32 Verlet lists
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
    analysis_bytes=analysis_bytes,
    analysis="simcore.analysis.active:active_diagnostics",
    figure="simcore.plotting.active:figure", animation="simcore.plotting.active:animate",
    quick_run={"n": 600, "steps": 400, "write_every": 50},
)
