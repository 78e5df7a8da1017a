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
from typing import Literal

import numpy as np
from numba import njit, prange
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simcore.engine import Engine, Option
from simcore.models import box_corner
from simcore import neighbors, rng

NAME = "couzin"
NDIM = 3
DEFAULT_STEPS = 3000
DEFAULT_WRITE_EVERY = 10

RULES = {"couzin2002": 0, "dewi": 1}
# lengths and rates kept within 1e-100..1e100 (dt is left to the runaway check of advance)
_SCALED = ("r_r", "r_o", "r_a", "speed", "box", "init_size", "turning_rate")
BOUNDARIES = {"open": 0, "periodic": 1, "reflecting": 2}
_PARALLEL_MIN_N = 128  # below this a prange launch costs more than it saves


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


# ---------------------------------------------------------------------------- kernels
@njit(cache=True, inline="always")
def _perpendicular(ux, uy, uz):
    """A unit vector perpendicular to the unit vector u."""
    if abs(ux) < 0.9:
        px, py, pz = 0.0, -uz, uy  # u × x̂
    else:
        px, py, pz = uz, 0.0, -ux  # u × ŷ
    nrm = math.sqrt(px * px + py * py + pz * pz)
    return px / nrm, py / nrm, pz / nrm


@njit(cache=True, inline="always")
def _turn_couzin(ux, uy, uz, dx, dy, dz, cap):
    """Rotate unit u toward unit d by at most ``cap`` radians (true rotation)."""
    c = ux * dx + uy * dy + uz * dz
    if c > 1.0:
        c = 1.0
    elif c < -1.0:
        c = -1.0
    phi = math.acos(c)
    if phi <= cap:
        return dx, dy, dz
    wx, wy, wz = dx - c * ux, dy - c * uy, dz - c * uz
    w = math.sqrt(wx * wx + wy * wy + wz * wz)
    if w < 1e-12:
        wx, wy, wz = _perpendicular(ux, uy, uz)
    else:
        wx, wy, wz = wx / w, wy / w, wz / w
    ca, sa = math.cos(cap), math.sin(cap)
    vx, vy, vz = ca * ux + sa * wx, ca * uy + sa * wy, ca * uz + sa * wz
    v = math.sqrt(vx * vx + vy * vy + vz * vz)
    return vx / v, vy / v, vz / v


_M21 = (1 << 21) - 1


@njit(cache=True, inline="always")
def _pack(cx, cy, cz):
    """One int64 per cell for the hash-collision filter (aliases are > 2^21 cells apart,
    so they are rejected by distance and never double-count visited cells)."""
    return ((cx & _M21) << 42) | ((cy & _M21) << 21) | (cz & _M21)


@njit(cache=True)
def _gather_sorted(pos, head, cell_of, order, xs, ys, zs, hxs, hys, hzs, keys):
    """Copy the state into cell order (structure of arrays) for contiguous pair loops."""
    for t in range(order.shape[0]):
        j = order[t]
        xs[t], ys[t], zs[t] = pos[j, 0], pos[j, 1], pos[j, 2]
        hxs[t], hys[t], hzs[t] = head[j, 0], head[j, 1], head[j, 2]
        keys[t] = _pack(cell_of[j, 0], cell_of[j, 1], cell_of[j, 2])


@njit(cache=True, inline="always")
def _decide(i, pos, head, box, ncell, reach, cell_of, bucket_start, xs, ys, zs, hxs, hys, hzs,
            keys, rule, rr2, ro2, ra2, cos_fov, cos_blind, w_o, cap, noise, speed, key, step):
    """New heading of agent i from the old state (both rules).

    The pair loop is branch-free (zone and visibility tests are unpredictable per pair)
    and runs over the contiguous, cell-sorted copies ``xs ... keys`` so it vectorises.
    """
    mask = bucket_start.shape[0] - 2
    px, py, pz = pos[i, 0], pos[i, 1], pos[i, 2]
    ux, uy, uz = head[i, 0], head[i, 1], head[i, 2]
    # periodic axes held as one cell need rounding per pair; others use cell image shifts
    bx = box[0] if ncell[0] == 1 else 0.0
    by = box[1] if ncell[1] == 1 else 0.0
    bz = box[2] if ncell[2] == 1 else 0.0
    ibx = 1.0 / bx if bx > 0.0 else 0.0
    iby = 1.0 / by if by > 0.0 else 0.0
    ibz = 1.0 / bz if bz > 0.0 else 0.0
    rounding = bx > 0.0 or by > 0.0 or bz > 0.0
    drx = dry = drz = 0.0
    dox = doy = doz = 0.0
    dax = day = daz = 0.0
    nr = no = na = 0.0
    vx = vy = vz = vn = inv_vn = 0.0
    if rule == 1:  # dewi: heading as vel/|vel| with vel = speed·u
        vx, vy, vz = ux * speed, uy * speed, uz * speed
        vn = math.sqrt(vx * vx + vy * vy + vz * vz)
        inv_vn = 1.0 / vn
    for ox in range(-reach[0], reach[0] + 1):
        cx, sx = neighbors.neighbor_cell(cell_of[i, 0], ox, ncell[0], box[0])
        for oy in range(-reach[1], reach[1] + 1):
            cy, sy = neighbors.neighbor_cell(cell_of[i, 1], oy, ncell[1], box[1])
            for oz in range(-reach[2], reach[2] + 1):
                cz, sz = neighbors.neighbor_cell(cell_of[i, 2], oz, ncell[2], box[2])
                b = neighbors.cell_hash(cx, cy, cz, mask)
                tkey = _pack(cx, cy, cz)
                lo = np.uint64(bucket_start[b])
                for u in range(bucket_start[b + 1] - bucket_start[b]):
                    t = lo + np.uint64(u)  # unsigned: no negative-index wraparound, so the
                    # loads stay contiguous and the loop vectorises without gathers
                    rx = xs[t] + sx - px
                    ry = ys[t] + sy - py
                    rz = zs[t] + sz - pz
                    if rounding:  # loop-invariant: LLVM unswitches it
                        rx -= bx * np.floor(rx * ibx + 0.5)
                        ry -= by * np.floor(ry * iby + 0.5)
                        rz -= bz * np.floor(rz * ibz + 0.5)
                    d2 = rx * rx + ry * ry + rz * rz
                    # anchor: skip pairs closer than 1e-10 (this also skips the agent itself)
                    ok = (keys[t] == tkey) & (d2 < ra2) & (d2 >= 1e-20)
                    inv = 1.0 / math.sqrt(d2 if ok else 1.0)
                    ex, ey, ez = rx * inv, ry * inv, rz * inv
                    near = d2 < rr2
                    if rule == 1:
                        cos_view = (vx * ex + vy * ey + vz * ez) * inv_vn
                        seen = ok & ((cos_blind < -2.0) | (cos_view > cos_blind))
                        in_r = 1.0 if seen & near else 0.0
                        in_o = 1.0 if seen & (d2 >= rr2) & (d2 < ro2) else 0.0
                        in_a = 1.0 if seen & (d2 >= ro2) else 0.0
                    else:
                        seen = ok & (d2 >= rr2) & (ux * ex + uy * ey + uz * ez >= cos_fov)
                        in_r = 1.0 if ok & near else 0.0
                        in_o = 1.0 if seen & (d2 < ro2) else 0.0
                        in_a = 1.0 if seen & (d2 >= ro2) else 0.0
                    drx -= in_r * ex
                    dry -= in_r * ey
                    drz -= in_r * ez
                    dox += in_o * hxs[t]
                    doy += in_o * hys[t]
                    doz += in_o * hzs[t]
                    dax += in_a * ex
                    day += in_a * ey
                    daz += in_a * ez
                    nr += in_r
                    no += in_o
                    na += in_a
    if rule == 1:
        return _dewi_turn(i, ux, uy, uz, vx, vy, vz, vn, drx, dry, drz, dox, doy, doz,
                          dax, day, daz, nr, no, na, w_o, cap, noise, key, step)
    # couzin2002: desired direction
    if nr > 0:
        n2 = math.sqrt(drx * drx + dry * dry + drz * drz)
        if n2 < 1e-12:
            dx, dy, dz = ux, uy, uz
        else:
            dx, dy, dz = drx / n2, dry / n2, drz / n2
    elif no > 0 or na > 0:
        dx = dy = dz = 0.0
        if no > 0:
            ox_, oy_, oz_ = dox + ux, doy + uy, doz + uz
            n2 = math.sqrt(ox_ * ox_ + oy_ * oy_ + oz_ * oz_)
            if n2 > 1e-12:
                dx, dy, dz = ox_ / n2, oy_ / n2, oz_ / n2
        if na > 0:
            n2 = math.sqrt(dax * dax + day * day + daz * daz)
            if n2 > 1e-12:
                if no > 0:
                    dx = 0.5 * (dx + dax / n2)
                    dy = 0.5 * (dy + day / n2)
                    dz = 0.5 * (dz + daz / n2)
                else:
                    dx, dy, dz = dax / n2, day / n2, daz / n2
        n2 = math.sqrt(dx * dx + dy * dy + dz * dz)
        if n2 < 1e-12:
            dx, dy, dz = ux, uy, uz
        else:
            dx, dy, dz = dx / n2, dy / n2, dz / n2
    else:
        dx, dy, dz = ux, uy, uz
    if noise > 0.0:
        base = rng.stream_base(key, step, i)
        g0, g1 = rng.normal_pair(base, 0)
        g2, _ = rng.normal_pair(base, 2)
        g0, g1, g2 = g0 * noise, g1 * noise, g2 * noise
        gd = g0 * dx + g1 * dy + g2 * dz
        tx, ty, tz = g0 - gd * dx, g1 - gd * dy, g2 - gd * dz
        a = math.sqrt(tx * tx + ty * ty + tz * tz)
        if a > 0.0:
            ca, sa = math.cos(a), math.sin(a) / a
            dx, dy, dz = ca * dx + sa * tx, ca * dy + sa * ty, ca * dz + sa * tz
            n2 = math.sqrt(dx * dx + dy * dy + dz * dz)
            dx, dy, dz = dx / n2, dy / n2, dz / n2
    return _turn_couzin(ux, uy, uz, dx, dy, dz, cap)


@njit(cache=True, inline="always")
def _dewi_turn(i, ux, uy, uz, vx, vy, vz, vn, drx, dry, drz, dox, doy, doz, dax, day, daz,
               nr, no, na, w_o, cap, noise, key, step):
    """dewi-kadita's _update_velocities_numba tail and _rotate_toward, op for op."""
    cx, cy, cz = vx / vn, vy / vn, vz / vn  # current_dir
    if nr > 0:
        tx, ty, tz = drx, dry, drz
    elif no > 0 or na > 0:
        tx = ty = tz = 0.0
        if no > 0:
            tx += dox * w_o
            ty += doy * w_o
            tz += doz * w_o
        if na > 0:
            tx += dax
            ty += day
            tz += daz
    else:
        tx, ty, tz = cx, cy, cz
    if nr > 0 or no > 0 or na > 0:  # _normalize: zero below 1e-10
        nrm = math.sqrt(tx * tx + ty * ty + tz * tz)
        if nrm < 1e-10:
            tx = ty = tz = 0.0
        else:
            tx, ty, tz = tx / nrm, ty / nrm, tz / nrm
    tn = math.sqrt(tx * tx + ty * ty + tz * tz)
    if tn < 1e-10:
        tx, ty, tz = cx, cy, cz
    else:
        tx, ty, tz = tx / tn, ty / tn, tz / tn
    dot = cx * tx + cy * ty + cz * tz
    dot = max(-1.0, min(1.0, dot))
    angle = math.acos(dot)
    if angle < 1e-10:
        nx, ny, nz = cx, cy, cz
    elif angle <= cap:
        nx, ny, nz = tx, ty, tz
    else:
        t = cap / angle
        nx, ny, nz = cx * (1 - t) + tx * t, cy * (1 - t) + ty * t, cz * (1 - t) + tz * t
        nrm = math.sqrt(nx * nx + ny * ny + nz * nz)
        if nrm > 1e-10:
            nx, ny, nz = nx / nrm, ny / nrm, nz / nrm
        else:
            nx, ny, nz = cx, cy, cz
    if noise > 0:
        base = rng.stream_base(key, step, i)
        g0, g1 = rng.normal_pair(base, 0)
        g2, _ = rng.normal_pair(base, 2)
        nx, ny, nz = nx + g0 * noise, ny + g1 * noise, nz + g2 * noise
        nrm = math.sqrt(nx * nx + ny * ny + nz * nz)
        if nrm > 1e-10:
            nx, ny, nz = nx / nrm, ny / nrm, nz / nrm
    return nx, ny, nz


# fast-math (reassociation) and numpy's error model (no zero-division checks) let LLVM
# vectorise the branch-free pair loop; results stay deterministic for a given build.
_FAST = dict(fastmath={"reassoc", "contract", "arcp", "nsz"}, error_model="numpy")


@njit(cache=True, parallel=True, **_FAST)
def _decide_all_parallel(pos, head, new_head, box, ncell, reach, cell_of, bucket_start, order, xs,
                         ys, zs, hxs, hys, hzs, keys, rule, rr2, ro2, ra2, cos_fov, cos_blind,
                         w_o, cap, noise, speed, key, step):
    for t in prange(pos.shape[0]):
        i = order[t]  # agents in cell order: neighbouring agents reuse the same cells
        hx, hy, hz = _decide(i, pos, head, box, ncell, reach, cell_of, bucket_start, xs, ys, zs,
                             hxs, hys, hzs, keys, rule, rr2, ro2, ra2, cos_fov, cos_blind, w_o,
                             cap, noise, speed, key, step)
        new_head[i, 0], new_head[i, 1], new_head[i, 2] = hx, hy, hz


@njit(cache=True, **_FAST)
def _decide_all_serial(pos, head, new_head, box, ncell, reach, cell_of, bucket_start, order, xs,
                       ys, zs, hxs, hys, hzs, keys, rule, rr2, ro2, ra2, cos_fov, cos_blind,
                       w_o, cap, noise, speed, key, step):
    for t in range(pos.shape[0]):
        i = order[t]  # agents in cell order: neighbouring agents reuse the same cells
        hx, hy, hz = _decide(i, pos, head, box, ncell, reach, cell_of, bucket_start, xs, ys, zs,
                             hxs, hys, hzs, keys, rule, rr2, ro2, ra2, cos_fov, cos_blind, w_o,
                             cap, noise, speed, key, step)
        new_head[i, 0], new_head[i, 1], new_head[i, 2] = hx, hy, hz


@njit(cache=True)
def _move(pos, head, speed, dt, rule, boundary, L):
    n = pos.shape[0]
    for i in range(n):
        for k in range(3):
            if rule == 1:
                x = pos[i, k] + (head[i, k] * speed) * dt
                pos[i, k] = x % L
            else:
                x = pos[i, k] + speed * dt * head[i, k]
                if boundary == 1:
                    x -= L * math.floor(x / L)
                    if x >= L:  # round-off can land exactly on L
                        x -= L
                elif boundary == 2:
                    if x < 0.0:
                        x = -x
                        head[i, k] = -head[i, k]
                    elif x > L:
                        x = 2.0 * L - x
                        head[i, k] = -head[i, k]
                pos[i, k] = x


@njit(cache=True)
def _run_steps(pos, head, scratch, box, side, ncell, reach, cell_of, bucket_of, bucket_start,
               order, xs, ys, zs, hxs, hys, hzs, keys, rule, boundary, L, rr2, ro2, ra2,
               cos_fov, cos_blind, w_o, cap, noise, speed, dt, key, step0, n_steps, parallel):
    for s in range(n_steps):
        neighbors.build(pos, side, ncell, cell_of, bucket_of, bucket_start, order)
        _gather_sorted(pos, head, cell_of, order, xs, ys, zs, hxs, hys, hzs, keys)
        if parallel:
            _decide_all_parallel(pos, head, scratch, box, ncell, reach, cell_of, bucket_start,
                                 order, xs, ys, zs, hxs, hys, hzs, keys, rule, rr2, ro2, ra2, cos_fov,
                                 cos_blind, w_o, cap, noise, speed, key, step0 + s)
        else:
            _decide_all_serial(pos, head, scratch, box, ncell, reach, cell_of, bucket_start,
                               order, xs, ys, zs, hxs, hys, hzs, keys, rule, rr2, ro2, ra2, cos_fov,
                               cos_blind, w_o, cap, noise, speed, key, step0 + s)
        head[:, :] = scratch
        _move(pos, head, speed, dt, rule, boundary, L)


def cell_plan(params: Params, positions: np.ndarray, all_pairs: bool = False):
    """Cell geometry for ``params`` (``all_pairs=True`` gives the all-pairs reference).

    The stencil reach is chosen from the number density: the box's, or in open space
    and reflecting boxes that of the agents' bounding box.
    """
    box = np.full(3, params.box) if params.boundary == "periodic" else np.zeros(3)
    if all_pairs:
        return neighbors.all_pairs_plan(box)
    if params.boundary == "periodic":  # fixed for the run: computed once, not per chunk
        return tuple(a.copy() for a in _periodic_plan(params.box, params.r_a, params.n))
    extent = np.maximum(positions.max(axis=0) - positions.min(axis=0), params.r_a)
    volume = float(np.prod(extent))
    return neighbors.auto_plan(box, params.r_a, density=params.n / volume)


@functools.lru_cache(maxsize=64)
def _periodic_plan(box: float, r_a: float, n: int):
    return neighbors.auto_plan(np.full(3, box), r_a, density=n / box ** 3)


_WORK: dict = {}


def advance(state, params: Params, key, step: int, n_steps: int, *, all_pairs: bool = False,
            parallel: bool | None = None) -> None:
    """Advance ``state`` in place by ``n_steps`` steps starting at global step ``step``.

    ``all_pairs=True`` uses the O(N²) reference search; ``parallel`` forces the threaded
    (True) or serial (False) kernel; by default threads are used for n >= 128. Results
    are identical either way.
    """
    n = params.n
    box, side, ncell, reach = cell_plan(params, state["positions"], all_pairs)
    work = state.get("_work")
    if work is None or work["order"].shape[0] != n:
        work = neighbors.allocate(n)
        work["scratch"] = np.empty((n, 3))
        for name in ("xs", "ys", "zs", "hxs", "hys", "hzs"):
            work[name] = np.empty(n)
        work["keys"] = np.empty(n, dtype=np.int64)
        state["_work"] = work
    if parallel is None:
        import numba

        parallel = n >= _PARALLEL_MIN_N and numba.get_num_threads() > 1
    if params.rule == "dewi":
        cos_blind = -math.cos(math.radians((360.0 - params.field_of_view) / 2)) \
            if params.field_of_view < 360.0 else -3.0
    else:
        cos_blind = -3.0
    cos_fov = math.cos(math.radians(params.field_of_view / 2))
    L = params.box
    _check_reach(state, params, step, n_steps)
    _run_steps(state["positions"], state["headings"], work["scratch"], box, side, ncell, reach,
               work["cell_of"], work["bucket_of"], work["bucket_start"], work["order"],
               work["xs"], work["ys"], work["zs"], work["hxs"], work["hys"], work["hzs"],
               work["keys"], RULES[params.rule], BOUNDARIES[params.boundary], L,
               params.r_r ** 2, params.r_o ** 2, params.r_a ** 2, cos_fov, cos_blind,
               params.orientation_weight, params.turning_rate * params.dt, params.noise,
               params.speed, params.dt, np.uint64(key), np.int64(step), np.int64(n_steps),
               bool(parallel))
    if not (np.isfinite(state["positions"]).all() and np.isfinite(state["headings"]).all()):
        from simcore._errors import UnstableRunError

        raise UnstableRunError(
            f"The Couzin run became unstable before step {step + n_steps} (in the chunk of "
            f"steps {step}..{step + n_steps}): positions or headings are no longer finite. "
            + stability_advice(params), first_step=step, last_step=step + n_steps)


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


def _check_reach(state, params: Params, step: int, n_steps: int) -> None:
    """Refuse a chunk in which an open-space agent would pass :data:`MAX_COORDINATE`
    (each step moves it by at most speed·dt per axis), before running it."""
    if params.boundary != "open" or n_steps <= 0:
        return
    far = float(np.abs(state["positions"]).max()) if params.n else 0.0
    step_len = params.speed * params.dt
    if far + step_len * n_steps < MAX_COORDINATE:
        return
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
    from simcore._errors import UserInputError

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
    work = (72 + 32) * n + (24 + 48 + 8) * n  # allocate(); scratch, 6 sorted copies, keys
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
    init_state=init_state, advance=advance, frame=frame, state_from_frame=state_from_frame,
    extra_variables=extra_variables, time_per_step=time_per_step, warnings=warnings,
    geometry=geometry, run_bytes=run_bytes, analysis_bytes=analysis_bytes,
    analysis="simcore.analysis.schooling:schooling_indices_from_dataset",
    analysis_options=(Option("convention", "schooling entropies: corrected (default) or the "
                             "dewi-kadita definitions", choices=("corrected", "dewi"),
                             default="corrected"),),
    figure="simcore.plotting.couzin:figure", animation="simcore.plotting.couzin:animate",
    quick_run={"n": 200, "steps": 60, "write_every": 10},
)
