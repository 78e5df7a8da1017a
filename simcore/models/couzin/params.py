"""Couzin parameters, presets (Couzin 2002 and the dewi-kadita cases) and the run geometry."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simcore.models import box_corner


NAME = "couzin"
NDIM = 3
DEFAULT_STEPS = 3000
DEFAULT_WRITE_EVERY = 10

RULES = {"couzin2002": 0, "dewi": 1}
# lengths and rates kept within 1e-100..1e100 (dt is left to the runaway check of advance)
_SCALED = ("r_r", "r_o", "r_a", "speed", "box", "init_size", "turning_rate")
BOUNDARIES = {"open": 0, "periodic": 1, "reflecting": 2}
_PARALLEL_MIN_N = 64  # below this a threaded step gains little (1.0x at 32 agents, 1.2-1.3x at 48-64)


class Params(BaseModel):
    """Parameters of the Couzin model (lengths in model units, time in model time units)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    n: int = Field(100, ge=1, le=50_000_000, description="number of agents")
    rule: Literal["couzin2002", "dewi"] = Field("couzin2002", description="update rule")
    r_r: float = Field(1.0, gt=0, description="radius of the zone of repulsion")
    r_o: float = Field(3.0, gt=0, description="outer radius of the zone of orientation")
    r_a: float = Field(15.0, gt=0, description="outer radius of the zone of attraction")
    field_of_view: float = Field(270.0, gt=0, le=360, description="field of perception, degrees")
    turning_rate: float = Field(
        math.radians(40.0), gt=0, description="maximum turning rate, rad per time unit"
    )
    speed: float = Field(3.0, gt=0, description="swimming speed, length per time unit")
    noise: float = Field(0.05, ge=0, le=10, description="s.d. of the heading noise per step, rad")
    dt: float = Field(0.1, gt=0, description="time step")
    boundary: Literal["open", "periodic", "reflecting"] = Field("open")
    box: float = Field(0.0, ge=0, description="cube side for periodic/reflecting boundaries")
    orientation_weight: float = Field(
        1.0, ge=0, le=1, description="weight of the orientation sum (rule 'dewi' only)"
    )
    kernel_precision: Literal["float64", "float32"] = Field(
        "float64",
        description="arithmetic of the pair loop: float64 (matches dewi-kadita to 1e-9), or "
        "float32 (twice the SIMD lanes: about 2x faster at large neighbour counts; distances "
        "carry ~1e-7 relative error, so trajectories part from float64 ones like any other "
        "perturbation of a chaotic flock)",
    )
    init: Literal["random", "mill"] = Field(
        "random", description="random positions/headings, or a pre-milled ring"
    )
    init_size: float | None = Field(
        None, gt=0,
        description="side of the initial cube (random) or ring radius (mill); default: "
        "2·r_r·n^(1/3) in open space, box (random) or box/4 (mill) in a box",
    )

    @model_validator(mode="after")
    def _consistent(self):
        out_of_range = [f"{name} = {getattr(self, name):g}" for name in _SCALED
                        if getattr(self, name) and not 1e-100 <= getattr(self, name) <= 1e100]
        if out_of_range:  # the cell lists and distances would overflow or divide by zero
            raise ValueError(f"{', '.join(out_of_range)} outside 1e-100..1e100: squared "
                             "distances and cell counts would leave float64's range; rescale "
                             "the units")
        problems = []
        if not self.r_r <= self.r_o <= self.r_a:
            problems.append(f"the zone radii must satisfy r_r <= r_o <= r_a (got r_r={self.r_r}, "
                            f"r_o={self.r_o}, r_a={self.r_a})")
        if self.rule == "dewi":
            if not self.r_r < self.r_o:
                problems.append("rule 'dewi' needs r_r < r_o")
            if self.boundary != "periodic" or self.box <= 0:
                problems.append("rule 'dewi' runs in a periodic cube: set boundary='periodic' "
                                "and box > 0")
        elif self.orientation_weight != 1.0:
            problems.append("orientation_weight is only used by rule 'dewi'; leave it at 1")
        if self.boundary == "open" and self.box > 0:
            problems.append("box is only used with boundary 'periodic' or 'reflecting'")
        if self.boundary != "open" and self.box <= 0:
            problems.append(f"boundary '{self.boundary}' needs a box side > 0")
        if self.boundary != "open" and self.box > 1e6 * self.r_a:
            problems.append(f"the box (side {self.box:g}) is {self.box / self.r_a:.3g} "
                            "attraction radii wide; the cell lists support at most 1e6 per "
                            "axis (such a box is empty space anyway): use boundary 'open'")
        if problems:
            raise ValueError("; ".join(problems))
        return self


_C = dict(r_r=1.0, field_of_view=270.0, turning_rate=math.radians(40.0), speed=3.0,
          noise=0.05, dt=0.1, n=100)
PRESETS: dict[str, dict] = {
    # Couzin 2002 regimes at N = 100 (r_r = 1, Δr_a = 14): Δr_o sets the state.
    "swarm": dict(_C, r_o=1.0, r_a=15.0),
    "torus": dict(_C, r_o=2.5, r_a=16.5),
    "dynamic_parallel": dict(_C, r_o=5.0, r_a=19.0),
    "highly_parallel": dict(_C, r_o=13.0, r_a=27.0),
    # dewi-kadita configs/case1..4 (turning_rate = max_turn / dt, fov = 360 - 2·blind angle)
    "dewi_swarm": dict(rule="dewi", n=150, box=25.0, boundary="periodic", speed=1.0, r_r=2.0,
                       r_o=3.0, r_a=15.0, turning_rate=0.4 / 0.1, noise=0.2,
                       field_of_view=300.0, orientation_weight=1.0, dt=0.1, steps=1000, seed=42),
    "dewi_torus": dict(rule="dewi", n=200, box=25.0, boundary="periodic", speed=1.0, r_r=1.0,
                       r_o=3.0, r_a=10.0, turning_rate=0.2 / 0.1, noise=0.05,
                       field_of_view=60.0, orientation_weight=0.1, init="mill", init_size=6.0,
                       dt=0.1, steps=2000, seed=42),
    "dewi_dynamic_parallel": dict(rule="dewi", n=180, box=28.0, boundary="periodic", speed=1.2,
                                  r_r=1.0, r_o=10.0, r_a=18.0, turning_rate=0.35 / 0.1,
                                  noise=0.12, field_of_view=310.0, dt=0.1, steps=1500, seed=456),
    "dewi_highly_parallel": dict(rule="dewi", n=250, box=35.0, boundary="periodic", speed=1.5,
                                 r_r=1.0, r_o=12.0, r_a=20.0, turning_rate=0.2 / 0.1,
                                 noise=0.05, field_of_view=320.0, dt=0.1, steps=1000, seed=789),
}
PRESET_DOCS = {
    "swarm": "Couzin 2002 swarm: Δr_o = 0 (no orientation zone), Δr_a = 14; low P, low M",
    "torus": "Couzin 2002 torus: Δr_o = 1.5, Δr_a = 14, from a random start; high M",
    "dynamic_parallel": "Couzin 2002 dynamic parallel group: Δr_o = 4, Δr_a = 14; P ≈ 0.6-0.9",
    "highly_parallel": "Couzin 2002 highly parallel group: Δr_o = 12, Δr_a = 14; P > 0.9",
    "dewi_swarm": "dewi-kadita configs/case1_swarm (rule 'dewi')",
    "dewi_torus": "dewi-kadita configs/case2_torus (rule 'dewi', pre-milled start R = 6)",
    "dewi_dynamic_parallel": "dewi-kadita configs/case3_dynamic_parallel (rule 'dewi')",
    "dewi_highly_parallel": "dewi-kadita configs/case4_highly_parallel (rule 'dewi')",
}
DEFAULT_PRESET = None



def extra_variables(params: Params) -> dict:
    """Per-frame variables beyond coordinates and velocities: none for Couzin."""
    return {}


def geometry(params: Params) -> dict:
    """Global attributes describing the container: ``simcore_boundary`` (per axis x y z:
    ``periodic``, ``wall``, ``open`` or ``none`` for the padding axis of a 2D model) and,
    where there is a box, its corners ``simcore_box_lo``/``simcore_box_hi`` (model length
    units). Readers that only know the AMBER cell see the periodic axes in ``cell_lengths``;
    walls are only in these attributes (docs/interop.md shows them as the cell)."""
    if params.boundary == "open":
        return {"simcore_boundary": "open open open"}
    kind = "periodic" if params.boundary == "periodic" else "wall"
    return {"simcore_boundary": f"{kind} {kind} {kind}", "simcore_box_lo": box_corner(0.0, 0.0, 0.0),
            "simcore_box_hi": box_corner(*[params.box] * 3)}


def time_per_step(params: Params) -> float:
    return params.dt


def warnings(params: Params) -> list[str]:
    """Non-fatal caveats, shown before a run."""
    out = []
    if params.boundary == "periodic" and params.r_a > params.box / 2:
        out.append(
            f"r_a = {params.r_a} exceeds half the periodic box ({params.box / 2}): the minimum "
            "image clips the attraction sphere to the box cell, coupling agents anisotropically "
            "across the whole box."
        )
    return out
