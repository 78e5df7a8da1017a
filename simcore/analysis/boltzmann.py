"""Coarse-grained Boltzmann entropy S_B(t) of a hard-disc (or ideal) gas, and the
closed-form collisionless curve F(τ).

One-particle phase space μ = (x, y, v_x, v_y) is cut into cells Δ_α = (Δx × Δy) × (Δv × Δv)
(spatial cells: x-strips spanning the box height, or a square grid; velocity cells of side
Δv, unbounded: the index is ⌊v/Δv⌋, no cut-off). With occupations N_α (Σ N_α = N),
m = k_B = h = 1 and the Gibbs 1/N!:

* exact    S_B = Σ_α [N_α ln|Δ_α| − ln Γ(N_α + 1)]
* Stirling S_B^St = −Σ_α N_α ln(N_α / |Δ_α|) + N  (each singly occupied cell adds exactly 1
  to S^St − S^exact)
* per particle s = S_B^St / N; the Miller–Madow term (K − 1)/(2N), K = occupied cells, is
  reported, never added (add it yourself to estimate the N → ∞ value).

Absolute values depend on the units of |Δ|; only differences are unit-free. Equilibrium
references in V and kV (same N, same cells, uniform positions in the region open to
centres, Maxwellian velocities with the exact energy N T) are computed by sampling.
A warning is issued when N/K < 50 (S_B is then biased low by ≳ 1 %).

F(τ), τ = Δv t / L: the entropy per particle produced by free flight of point particles
initially uniform in [0, L] of [0, 2L] (hard walls), Maxwellian, in the limit Δx ≪ Δv t,
Δv ≪ √T; the periodic variant (period 2L) is F(2τ).
"""

from __future__ import annotations

import math
import warnings as _warnings
from typing import Sequence

import numpy as np
import xarray as xr
from scipy.special import gammaln

from simcore._errors import UserInputError
from simcore.analysis._frames import frame_dim

#: the candidate velocity-cell sides Δv, in units of √T; the default list of a run is
#: :func:`default_dv`: the three finest that keep N/K ≥ MIN_PARTICLES_PER_CELL
DV_LADDER = (0.25, 0.5, 1.0, 2.0, 4.0)
DEFAULT_DV = DV_LADDER[:3]  # the finest three (a run with enough particles gets them)
MIN_PARTICLES_PER_CELL = 50.0
_CHUNK_VALUES = 4_000_000  # particle-frames read at once


# ---------------------------------------------------------------------------- F(τ)
def _eta(g):
    g = np.asarray(g, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(g > 0, -g * np.log(np.where(g > 0, g, 1.0)), 0.0)


def _Phi(g):
    g = np.asarray(g, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.log(np.where(g > 0, g, 1.0))
    return np.where(g > 0, -0.5 * g * g * lg + 0.25 * g * g, 0.0)


def free_flight_entropy(tau, geometry: str = "walls") -> np.ndarray:
    """F(τ): collisionless entropy production per particle (units of k_B), τ = Δv t / L.

    ``geometry="walls"``: hard walls at 0 and 2L, gas initially in [0, L]; F = τ/4 for
    τ ≤ 2, back to ln 2 at τ = 4, 8, ... with decaying dips between.
    ``geometry="periodic"``: period 2L, initial slab of width L: F_per(τ) = F(2τ).
    Returns an array shaped like ``tau`` (a float for a scalar).
    """
    if geometry not in ("walls", "periodic"):
        raise UserInputError(f"geometry must be 'walls' or 'periodic' (got {geometry!r}).")
    t = np.asarray(tau, dtype=float)
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise UserInputError("free_flight_entropy needs finite τ >= 0.")
    if geometry == "periodic":
        t = 2.0 * t
    safe = np.where(t > 0, t, 1.0)
    m = np.floor(safe / 4.0)
    rho = safe - 4.0 * m
    low = rho <= 2.0
    a = np.where(low, m, m + 1.0)
    ell = np.where(low, rho, 4.0 - rho)
    g_t = np.where(low, (m + rho / 2.0) / safe, (m + 1.0 - ell / 2.0) / safe)
    g_b = a / safe
    with np.errstate(divide="ignore", invalid="ignore"):
        second = np.where(ell > 0, 2.0 * ell * (_Phi(g_t) - _Phi(g_b))
                          / np.where(g_t != g_b, g_t - g_b, 1.0), 0.0)
    H = (2.0 - ell) * (_eta(g_b) + _eta(g_t)) + second
    out = np.where(t > 0, H - math.log(2.0), 0.0)
    return float(out) if np.ndim(tau) == 0 else out


# ---------------------------------------------------------------------------- counting
def cell_entropies(x, y, vx, vy, box, dv: float, nx: int, ny: int) -> tuple[float, float, int]:
    """(S_exact, S_stirling, K) of one configuration.

    ``box = (L_x, L_y)``: spatial cells are an nx × ny grid over [0, L_x] × [0, L_y]
    (ny = 1: x-strips); velocity cells of side ``dv`` indexed by ⌊v/dv⌋ without bounds.
    """
    n = len(x)
    lx, ly = box
    hx, hy = lx / nx, ly / ny
    ix = np.clip((np.asarray(x) * (1.0 / hx)).astype(np.int64), 0, nx - 1)
    iy = (np.clip((np.asarray(y) * (1.0 / hy)).astype(np.int64), 0, ny - 1) if ny > 1
          else np.zeros(n, dtype=np.int64))
    jx = np.floor(np.asarray(vx) * (1.0 / dv)).astype(np.int64)
    jy = np.floor(np.asarray(vy) * (1.0 / dv)).astype(np.int64)
    jx -= jx.min()
    jy -= jy.min()
    rx, ry = int(jx.max()) + 1, int(jy.max()) + 1
    size = nx * ny * rx * ry
    key = ((ix * ny + iy) * rx + jx) * ry + jy
    if size <= 8 * n + 4_000_000:
        counts = np.bincount(key, minlength=0)
        counts = counts[counts > 0]
    else:
        counts = np.unique(key, return_counts=True)[1]
    counts = counts.astype(np.float64)
    log_cell = math.log(hx * hy * dv * dv)
    s_exact = n * log_cell - float(gammaln(counts + 1.0).sum())
    s_stirling = n * log_cell - float((counts * np.log(counts)).sum()) + n
    return s_exact, s_stirling, int(counts.size)


def _spatial_cells(params, dx: float | None, cells: str) -> tuple[int, int, float]:
    if cells not in ("strips", "grid"):
        raise UserInputError(f"cells must be 'strips' or 'grid' (got {cells!r}).")
    dx = params.L / 8.0 if dx is None else float(dx)
    if not dx > 0:
        raise UserInputError(f"dx must be positive (got {dx}).")
    nx = max(1, int(round(params.L_x / dx)))
    ny = 1 if cells == "strips" else max(1, int(round(params.L_y / dx)))
    return nx, ny, params.L_x / nx


def equilibrium_sample(params, seed: int = 0, initial: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An equilibrium ideal-gas sample (x, y, vx, vy): uniform in the region open to disc
    centres before (``initial``) or after the expansion, Maxwellian velocities shifted to
    zero momentum and rescaled to the exact energy N T (as the engine's start)."""
    g = np.random.default_rng(seed)
    x0, x1, y0, y1 = params.accessible(initial=initial)
    n = params.n
    x = x0 + g.random(n) * (x1 - x0)
    y = y0 + g.random(n) * (y1 - y0)
    v = g.standard_normal((n, 2))
    if n > 1:
        v -= v.mean(axis=0)
    v *= math.sqrt(2.0 * n * params.T / float((v ** 2).sum()))
    return x, y, v[:, 0], v[:, 1]


def default_dv(params, dx: float | None = None, cells: str = "strips",
               reference_seed: int = 0) -> tuple[float, ...]:
    """The default Δv list of a run (velocity units, √(k_B T/m) = √T): the (up to) three finest of
    √T · :data:`DV_LADDER` whose occupied-cell count K in an equilibrium sample of the
    expanded volume (the most cells the run reaches) keeps N/K ≥
    :data:`MIN_PARTICLES_PER_CELL`, so that the default analysis is not biased by sparse
    cells. A run too small for even the coarsest gets the three coarsest (and the
    warning of :func:`boltzmann_entropy`)."""
    nx, ny, _ = _spatial_cells(params, dx, cells)
    box = (params.L_x, params.L_y)
    sample = equilibrium_sample(params, seed=reference_seed + 1, initial=False)
    ladder = [float(f * math.sqrt(params.T)) for f in DV_LADDER]
    fits = [d for d in ladder
            if params.n / max(cell_entropies(*sample, box, d, nx, ny)[2], 1)
            >= MIN_PARTICLES_PER_CELL]
    return tuple(fits[:3] if fits else ladder[-3:])


def _check_dv(dv) -> np.ndarray:
    dvs = np.atleast_1d(np.asarray(dv, dtype=float))
    if dvs.size == 0 or not np.all(np.isfinite(dvs)) or np.any(dvs <= 0):
        raise UserInputError(f"dv must be a list of positive velocity-cell sides (got {dv!r}).")
    return dvs


def boltzmann_entropy(ds: xr.Dataset, dv: Sequence[float] | None = None, dx: float | None = None,
                      cells: str = "strips", reference_seed: int = 0,
                      progress: bool = False) -> xr.Dataset:
    """S_B(t) of a hard-disc trajectory for several Δv in one pass over the frames.

    Parameters
    ----------
    ds : a ``harddisc`` trajectory (``simcore.open_trajectory``); frames are read in
        chunks, never all at once.
    dv : velocity-cell sides Δv (units of √(k_B T / m) when T = 1); default
        :func:`default_dv`, the finest that keep N/K ≥ 50 for this run.
    dx : spatial cell side (σ units); default L/8 (L = width of the initial volume), so
        that the partition falls on a cell boundary for integer k.
    cells : ``"strips"`` (x-strips of width dx spanning the box height) or ``"grid"``
        (dx × dx squares, rounded to fit the box).
    reference_seed : seed of the equilibrium reference samples.

    Returns an xarray Dataset with dims (``dv``, ``time``): ``S_exact``, ``S_stirling``
    (totals, k_B), ``s_per_particle`` (= S_stirling/N), ``K``, ``miller_madow``
    ((K − 1)/(2N)), ``delta_s_exact`` / ``delta_s_stirling`` (ΔS/N from the first frame),
    ``tau`` (Δv t / L) and ``free_flight`` (F(τ) for the run's x geometry); and with dim
    ``dv``: the equilibrium references ``S_eq_V_*``, ``S_eq_kV_*``, ``K_eq_V``, ``K_eq_kV``
    and ``delta_s_eq_stirling`` / ``delta_s_eq_exact`` = (S(kV) − S(V))/N.
    """
    from simcore.analysis import require_model

    require_model(ds, "harddisc", "boltzmann_entropy")
    params = ds.simcore.params
    dvs = _check_dv(default_dv(params, dx, cells, reference_seed) if dv is None else dv)
    nx, ny, hx = _spatial_cells(params, dx, cells)
    box = (params.L_x, params.L_y)
    n = params.n
    fdim = frame_dim(ds)
    times = np.asarray(ds["time"].values, dtype=float)
    nt = len(times)
    S_ex = np.zeros((dvs.size, nt))
    S_st = np.zeros((dvs.size, nt))
    K = np.zeros((dvs.size, nt), dtype=np.int64)
    per = max(1, _CHUNK_VALUES // max(n, 1))
    from simcore._progress import progress as progress_bar

    bar = progress_bar(nt, desc="S_B", unit="frames", quiet=not progress)
    for a in range(0, nt, per):
        b = min(nt, a + per)
        bar.update(b - a)
        pos = np.asarray(ds["coordinates"].isel({fdim: slice(a, b)}).values, dtype=np.float64)
        vel = np.asarray(ds["velocities"].isel({fdim: slice(a, b)}).values, dtype=np.float64)
        for f in range(b - a):
            for k, d in enumerate(dvs):
                S_ex[k, a + f], S_st[k, a + f], K[k, a + f] = cell_entropies(
                    pos[f, :, 0], pos[f, :, 1], vel[f, :, 0], vel[f, :, 1], box, d, nx, ny)
    bar.close()
    ref = {key: np.zeros(dvs.size) for key in ("S_eq_V_exact", "S_eq_V_stirling",
                                               "S_eq_kV_exact", "S_eq_kV_stirling")}
    K_ref = {"K_eq_V": np.zeros(dvs.size, dtype=np.int64),
             "K_eq_kV": np.zeros(dvs.size, dtype=np.int64)}
    for tag, initial, seed in (("V", True, reference_seed), ("kV", False, reference_seed + 1)):
        sample = equilibrium_sample(params, seed=seed, initial=initial)
        for k, d in enumerate(dvs):
            e, s, kk = cell_entropies(*sample, box, d, nx, ny)
            ref[f"S_eq_{tag}_exact"][k], ref[f"S_eq_{tag}_stirling"][k] = e, s
            K_ref[f"K_eq_{tag}"][k] = kk
    tau = dvs[:, None] * times[None, :] / params.L
    geometry = "periodic" if params.x_boundary == "periodic" else "walls"
    dims = ("dv", "time")
    out = xr.Dataset(
        {
            "S_exact": (dims, S_ex, {"units": "k_B", "long_name": "S_B, exact (ln Γ) form"}),
            "S_stirling": (dims, S_st, {"units": "k_B", "long_name": "S_B, Stirling form"}),
            "s_per_particle": (dims, S_st / n, {"units": "k_B", "long_name": "S_B^St / N"}),
            "K": (dims, K, {"long_name": "number of occupied cells"}),
            "miller_madow": (dims, (K - 1) / (2.0 * n),
                             {"units": "k_B", "long_name": "Miller-Madow term (K-1)/(2N)"}),
            "delta_s_exact": (dims, (S_ex - S_ex[:, :1]) / n,
                              {"units": "k_B", "long_name": "ΔS_B/N from the first frame"}),
            "delta_s_stirling": (dims, (S_st - S_st[:, :1]) / n,
                                 {"units": "k_B", "long_name": "ΔS_B^St/N from the first frame"}),
            "tau": (dims, tau, {"long_name": "τ = Δv t / L"}),
            "free_flight": (dims, free_flight_entropy(tau, geometry),
                            {"units": "k_B", "long_name": f"F(τ), {geometry}"}),
            **{k: ("dv", v, {"units": "k_B"}) for k, v in ref.items()},
            **{k: ("dv", v) for k, v in K_ref.items()},
            "delta_s_eq_stirling": ("dv", (ref["S_eq_kV_stirling"] - ref["S_eq_V_stirling"]) / n,
                                    {"units": "k_B", "long_name": "(S(kV) - S(V))/N, Stirling"}),
            "delta_s_eq_exact": ("dv", (ref["S_eq_kV_exact"] - ref["S_eq_V_exact"]) / n,
                                 {"units": "k_B", "long_name": "(S(kV) - S(V))/N, exact"}),
        },
        coords={"dv": dvs, "time": times},
        attrs={"n": n, "L": params.L, "L_x": params.L_x, "L_y": params.L_y, "dx": hx,
               "dy": params.L_y / ny, "cells": cells, "T": params.T,
               "expansion": params.expansion, "geometry": geometry,
               "ln_expansion": math.log(params.expansion),
               "phase_space_unit": "h = m = k_B = 1; σ length unit"},
    )
    ratio = n / max(int(K.max()), 1)
    if ratio < MIN_PARTICLES_PER_CELL:
        msg = (f"N/K = {ratio:.3g} < {MIN_PARTICLES_PER_CELL:g} (N = {n}, up to K = {int(K.max())} "
               f"occupied cells at Δv = {dvs[np.unravel_index(K.argmax(), K.shape)[0]]:g}): "
               "S_B is biased low by the sparse cells (~1 % at N/K = 50, 10-20 % at N/K = 10); "
               "use more particles or coarser cells.")
        out.attrs["warning"] = msg
        _warnings.warn(msg, stacklevel=2)
    return out
