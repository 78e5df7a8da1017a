"""Hard-disc parameters, presets, closed forms (Henderson, Enskog) and the run geometry."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simcore.models import box_corner
from simcore._errors import UserInputError


NAME = "harddisc"
NDIM = 2
THREADED = False  # the event loop is serial
DEFAULT_STEPS = 100
DEFAULT_WRITE_EVERY = 1
DEFAULT_PRESET = None
MAX_INITIAL_PHI = 0.45  # random sequential placement jams at 0.547 in 2D
# more events than this per frame interval (about a day of CPU time at ~1e6 events/s) is
# a mistake (T = 1e300 would make a frame last for ever), refused at validation
MAX_EVENTS_PER_FRAME = 1e11
MAX_BOX_SIGMAS = 1e12  # float64 positions resolve 1e-4 sigma in a box this wide

# indices of the cumulative counters in state["stats"]
ST_COLL, ST_WALL, ST_IMP_X, ST_IMP_Y, ST_VIRIAL, ST_EVENTS, ST_CROSS, ST_STALE = range(8)
N_STATS = 8
# the kernel renumbers the particles by cell every this many events per particle
RESORT_EVENTS_PER_PARTICLE = 4


class Params(BaseModel):
    """Parameters of the hard-disc free expansion (lengths in σ units, m = 1, k_B = 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    n: int = Field(4000, ge=1, le=50_000_000, description="number of discs N")
    sigma: float = Field(1.0, gt=0, description="disc diameter σ")
    phi: float = Field(0.05, gt=0, lt=0.45,
                       description="packing fraction N π σ²/4 / (k L L_y) of the final volume")
    aspect: float = Field(1.0, gt=0, le=1e4, description="L_y / L")
    T: float = Field(1.0, gt=0,
                     description="temperature k_B T (energy per particle = T in 2D); within "
                     "1e-100..1e100 so that v² and the contact-time arithmetic stay in float64")
    expansion: float = Field(2.0, ge=1.0, le=1e3,
                             description="k of V -> kV (1: no partition, an equilibrium run)")
    x_boundary: Literal["wall", "periodic"] = Field(
        "wall", description="hard walls at x = 0 and k·L, or periodic with period k·L")
    y_boundary: Literal["wall", "periodic"] = Field(
        "wall", description="hard walls at y = 0 and L_y, or periodic")
    interactions: bool = Field(
        True, description="false: point particles that never collide (walls at the box "
        "edges; σ only sets L through φ) — the collisionless limit")
    velocities: Literal["maxwell", "equal_speed"] = Field(
        "maxwell", description="initial velocities: Maxwellian, or all with speed √(2T) "
        "in random directions (a non-equilibrium start)")
    equilibrate: float = Field(
        0.0, ge=0, le=1e4,
        description="collisions per particle behind the partition before t = 0")
    t_end: float = Field(100.0, gt=0, description="duration after the partition removal")
    frame_dt: float = Field(1.0, gt=0, description="time between written frames")
    cell_size: float | None = Field(
        None, gt=0, description="cell-list side (>= σ); default max(3σ, √(1.5/n_final))")
    queue: Literal["heap", "calendar"] = Field(
        "heap", description="event queue: 'heap' (a tournament tree of event times, the "
        "fastest) or 'calendar' (identical results)")

    @model_validator(mode="after")
    def _consistent(self):
        out_of_range = [f"{name} = {getattr(self, name):g}" for name in ("sigma", "t_end",
                                                                          "frame_dt", "cell_size")
                        if getattr(self, name) and not 1e-100 <= getattr(self, name) <= 1e100]
        if out_of_range:  # the box side and squared distances would overflow
            raise ValueError(f"{', '.join(out_of_range)} outside 1e-100..1e100: the box side "
                             "and squared distances would leave float64's range; rescale the "
                             "units (sigma = 1 is the natural length)")
        problems = []
        if self.phi * self.expansion >= MAX_INITIAL_PHI:
            problems.append(
                f"the initial packing fraction k·φ = {self.phi * self.expansion:g} is too "
                f"dense for random placement (must be below {MAX_INITIAL_PHI})")
        if self.interactions:
            if self.cell_size is not None and self.cell_size < self.sigma:
                problems.append(f"cell_size must be at least sigma = {self.sigma}")
            if self.L < 2 * self.sigma or self.L_y < 2 * self.sigma:
                problems.append(f"the box L = {self.L:.3g}, L_y = {self.L_y:.3g} is smaller "
                                "than two diameters: use more discs or a lower phi")
            for axis, bc, length in (("x", self.x_boundary, self.L_x), ("y", self.y_boundary,
                                                                      self.L_y)):
                if bc == "periodic" and length < 4 * self.sigma:
                    problems.append(f"a periodic {axis} axis needs a box side of at least "
                                    f"4 sigma (got {length:.3g})")
        if not 1e-100 <= self.T <= 1e100:
            problems.append(
                f"T = {self.T:g} is outside 1e-100..1e100: the squared speeds (~T) and the "
                "contact-time arithmetic would leave float64's range; T only sets the time "
                "unit (times scale as 1/√T), so use T = 1 and rescale frame_dt and t_end")
        if not problems and self.L_x > MAX_BOX_SIGMAS * self.sigma:
            problems.append(
                f"the box is L_x = {self.L_x:.3g} = {self.L_x / self.sigma:.3g} diameters wide; "
                "float64 resolves positions to 1e-16 of that, so contacts need a box below "
                f"{MAX_BOX_SIGMAS:.0e} sigma: use a higher phi or fewer discs")
        if not problems:
            events = estimated_events_per_frame(self)
            if events > MAX_EVENTS_PER_FRAME:
                problems.append(
                    f"one frame interval frame_dt = {self.frame_dt:g} would take about "
                    f"{events:.2g} events (collisions and cell crossings at T = {self.T:g}, "
                    f"sigma = {self.sigma:g}; the engine processes about 1e6 per second, so "
                    "no frame would ever be written); keep it below "
                    f"{MAX_EVENTS_PER_FRAME:.0e} with a smaller frame_dt (and t_end): the "
                    "natural time unit is sigma·√(m/T), so T and sigma only rescale time")
        if self.x_boundary == "periodic" and self.expansion == 1.0 and self.equilibrate > 0 \
                and not self.interactions:
            problems.append("equilibrate needs interactions")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def L(self) -> float:
        """Width of the initial volume (the partition sits at x = L)."""
        return math.sqrt(self.n * math.pi * self.sigma ** 2
                         / (4.0 * self.phi * self.expansion * self.aspect))

    @property
    def L_y(self) -> float:
        return self.aspect * self.L

    @property
    def L_x(self) -> float:
        """Width of the final box, k·L."""
        return self.expansion * self.L

    @property
    def wall_radius(self) -> float:
        """Distance of closest approach of a centre to a wall (σ/2; 0 without interactions)."""
        return 0.5 * self.sigma if self.interactions else 0.0

    def accessible(self, initial: bool = False) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) of the region open to disc centres before/after the removal."""
        r = self.wall_radius
        lx = self.L if initial and self.expansion > 1.0 else self.L_x
        xper = self.x_boundary == "periodic" and not (initial and self.expansion > 1.0)
        x0, x1 = (0.0, lx) if xper else (r, lx - r)
        y0, y1 = (0.0, self.L_y) if self.y_boundary == "periodic" else (r, self.L_y - r)
        return x0, x1, y0, y1

    @property
    def number_density(self) -> float:
        """n = N / (k L L_y) in the final volume."""
        return self.n / (self.L_x * self.L_y)


def estimated_events_per_frame(params: Params) -> float:
    """Rough number of events (pair and wall collisions, cell crossings) in one frame
    interval: N·frame_dt·(ν + 2 v̄ / a + 2 v̄ / L_x) with ν the Enskog collision rate at
    the densest (initial) packing, v̄ = √(πT/2) the mean speed and a the cell side."""
    mean_speed = math.sqrt(math.pi * params.T / 2.0)
    rate = 2.0 * mean_speed / params.L_x
    if params.interactions:
        eta = min(params.phi * params.expansion, MAX_INITIAL_PHI)
        rate += enskog_collision_rate(params, eta)
        ncx, ncy = _cell_grid(params, params.L_x)
        side = min(params.L_x / ncx, params.L_y / ncy)
        rate += 2.0 * mean_speed / side
    return params.n * params.frame_dt * rate


def henderson_g(eta: float) -> float:
    """Henderson's contact value g(σ) = (1 − 7η/16)/(1 − η)² of 2D hard discs."""
    return (1 - 7 * eta / 16) / (1 - eta) ** 2


def henderson_z(eta: float) -> float:
    """Henderson's compressibility factor Z = βP/n = (1 + η²/8)/(1 − η)² (2D hard discs)."""
    return (1 + eta * eta / 8) / (1 - eta) ** 2


def enskog_collision_rate(params: Params, eta: float | None = None) -> float:
    """Collisions per particle per unit time ν = 2 n σ g(σ) √(π T / m) (Enskog, Henderson g)."""
    eta = params.phi if eta is None else eta
    n = 4 * eta / (math.pi * params.sigma ** 2)
    return 2 * n * params.sigma * henderson_g(eta) * math.sqrt(math.pi * params.T)


def mean_free_path(params: Params) -> float:
    """λ = ⟨|v|⟩/ν = 1/(2√2 n σ g(σ)) in the final volume."""
    return 1.0 / (2 * math.sqrt(2) * params.number_density * params.sigma
                  * henderson_g(params.phi))


_EXPANSION = dict(sigma=1.0, aspect=1.0, T=1.0, expansion=2.0, x_boundary="wall",
                  y_boundary="wall")
PRESETS: dict[str, dict] = {
    # λ/L = L/(√2 N σ g) = 0.50 for N = 4e4, L = 28284 (φ = 1.96e-5); t_end = 4.24 L
    "knudsen": dict(_EXPANSION, n=40000, phi=1.9635e-5, equilibrate=0.0, t_end=120000.0,
                    frame_dt=1500.0),
    # λ = 13.45, L = 886: λ/L = 0.015; ~250 collisions per particle by t_end = 3 L
    "hydro": dict(_EXPANSION, n=40000, phi=0.02, equilibrate=5.0, t_end=2700.0, frame_dt=30.0),
    # point particles, same box as hydro but N = 2e4 (L = 627): τ = Δv t / L reaches 5.7
    # at Δv = 0.25
    "collisionless": dict(_EXPANSION, n=20000, phi=0.02, interactions=False, t_end=14400.0,
                          frame_dt=144.0),
    # periodic square, no partition: ~2e6 collisions in t = 2000 (ν = 0.2446 at φ = 0.05)
    "equilibrium_check": dict(n=10000, phi=0.05, expansion=1.0, x_boundary="periodic",
                              y_boundary="periodic", equilibrate=5.0, t_end=2000.0,
                              frame_dt=100.0),
}
PRESET_DOCS = {
    "knudsen": "free expansion 2V, λ/L ≈ 0.5 (N = 4e4, very dilute): Knudsen regime",
    "hydro": "free expansion 2V, λ/L ≈ 0.015 (N = 4e4, φ = 0.02): hydrodynamic regime",
    "collisionless": "free expansion 2V of point particles (N = 2e4): S_B(t) = N F(Δv t/L)",
    "equilibrium_check": "periodic box at φ = 0.05, N = 1e4: equation of state and ν",
}


# parameters that set the run's length: `simcore run --extend` may raise them
RUN_LENGTH_PARAMS = ("t_end",)


def resolve_run(params: Params, settings, given: set[str]) -> tuple:
    """Make ``steps`` and ``t_end`` agree (called by :func:`simcore.config.resolve`).

    ``steps = t_end / frame_dt`` (one driver step is one frame interval). When only
    ``steps`` is given, ``t_end`` follows from it; when both are given they must agree.
    """
    k = params.t_end / params.frame_dt
    if "steps" in given and "t_end" not in given:
        if settings.steps < 1:  # t_end = 0 would be stored, which no reader accepts
            raise UserInputError(
                f"steps must be at least 1 for the hard discs (got {settings.steps}): one step "
                f"is one frame interval frame_dt = {params.frame_dt:g}.")
        return params.model_copy(update={"t_end": settings.steps * params.frame_dt}), settings
    steps = int(round(k))
    if steps < 1 or abs(steps - k) > 1e-9 * max(1.0, k):
        raise UserInputError(
            f"t_end = {params.t_end:g} is not a whole number of frame intervals frame_dt = "
            f"{params.frame_dt:g} (t_end/frame_dt = {k:.6g}); the hard-disc engine writes "
            "one frame per frame_dt, so choose t_end as a multiple of frame_dt.")
    if "steps" in given and settings.steps != steps:
        raise UserInputError(
            f"steps = {settings.steps} disagrees with t_end / frame_dt = {params.t_end:g} / "
            f"{params.frame_dt:g} = {steps}: for the hard-disc engine one step is one frame "
            "interval. Give either t_end (with --set t_end=...) or steps, not both.")
    return params, settings.model_copy(update={"steps": steps})


def time_per_step(params: Params) -> float:
    """One driver step is one frame interval."""
    return params.frame_dt


def warnings(params: Params) -> list[str]:
    out = []
    if not params.interactions and params.equilibrate > 0:
        out.append("equilibrate is ignored without interactions (the uniform Maxwellian "
                   "start already is the ideal-gas equilibrium)")
    nc = _cell_grid(params, params.L_x)
    if params.interactions and nc[0] * nc[1] > 4 * params.n + 64:
        out.append(f"{nc[0] * nc[1]} cells for {params.n} discs: memory grows with the number "
                   "of cells; consider a larger cell_size")
    return out


def geometry(params: Params) -> dict:
    """Global attributes describing the container: ``simcore_boundary`` (per axis x y z:
    ``periodic``, ``wall``, ``open`` or ``none`` for the padding axis of a 2D model) and,
    where there is a box, its corners ``simcore_box_lo``/``simcore_box_hi`` (model length
    units). Readers that only know the AMBER cell see the periodic axes in ``cell_lengths``;
    walls are only in these attributes (docs/interop.md shows them as the cell).
    For the free expansion the container is [0, k·L] x [0, L_y] (the frames are all after
    the partition's removal)."""
    return {"simcore_boundary": f"{params.x_boundary} {params.y_boundary} none",
            "simcore_box_lo": box_corner(0.0, 0.0, 0.0),
            "simcore_box_hi": box_corner(params.L_x, params.L_y, 0.0)}


def extra_variables(params: Params) -> dict:
    """Per-frame invariants and counters (scalars or 3-vectors, written as float64)."""
    return {
        "energy": ((), "1", "total kinetic energy ½ Σ m v² (k_B T units; = N T)"),
        "momentum": (("spatial",), "1", "total momentum Σ m v (z = 0)"),
        "collisions": ((), "1", "pair collisions since t = 0"),
        "wall_collisions": ((), "1", "wall collisions since t = 0"),
        "wall_impulse": (("spatial",), "1",
                         "impulse Σ 2 m |v_n| given to the x walls and to the y walls since t = 0"),
        "virial": ((), "1", "collision virial Σ |r_ij| m |Δv_n| since t = 0 "
                   "(P A = N T + virial / (2 t))"),
        "events": ((), "1", "events processed since t = 0 (collisions, walls, crossings, "
                   "stale)"),
    }


# ---------------------------------------------------------------------------- geometry
def _cell_grid(params: Params, lx: float) -> tuple[int, int]:
    """Cells per axis for a box of width ``lx``: side >= σ, default max(3σ, √(1.5/n)),
    about 1.5 discs per cell (measured best from φ = 0.005 to 0.1 at N = 10⁴)."""
    if not params.interactions:
        return 1, 1
    side = params.cell_size
    if side is None:
        side = max(3.0 * params.sigma, math.sqrt(1.5 / params.number_density))
    out = []
    for length, bc in ((lx, params.x_boundary), (params.L_y, params.y_boundary)):
        m = max(1, int(length / side))
        while m > 1 and length / m < params.sigma:
            m -= 1
        if bc == "periodic" and m < 4:
            m = max(4, int(length / params.sigma))
        out.append(m)
    return out[0], out[1]
