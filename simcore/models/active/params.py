"""ABP/AOUP parameters, presets, the run geometry and the stability advice."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simcore.models import box_corner


NAME = "abp"
NDIM = 2
HAS_VELOCITIES = False  # overdamped: the file stores the drift as `drift`, not `velocities`
DEFAULT_STEPS = 20000
DEFAULT_WRITE_EVERY = 200
DEFAULT_PRESET = None
_PARALLEL_MIN_N_FORCES = 512  # forces(): one threaded evaluation pays from here
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
