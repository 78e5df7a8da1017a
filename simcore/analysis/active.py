"""Diagnostics of 2D active-particle runs (ABP/AOUP): MSD, local density and MIPS, clusters,
and the exact, score-free entropy production rates.

Exact EPR totals per particle (k_B = 1, propulsion even under time reversal, the
convention of Boffi & Vanden-Eijnden; model time units):

* ABP, D_t > 0:            Σ̇/N = (v0/D_t) (v0 + μ ⟨n_i·F_i⟩)
* AOUP, D_t = ε > 0:       Σ̇/N = ⟨|b_i|²⟩/D_t + μ ⟨∇_i·F_i⟩,  b_i = v0 g_i + μ F_i
* hypoelliptic (D_t = 0):  Σ̇/N = −μ ⟨∇_i·F_i⟩  (the θ or g sector only)

F_i includes the trap −κ(x_i − centre). Forces and divergences are recomputed from the
stored coordinates with the model's own kernel (store float64 with
``--set precision=float64`` when the EPR must be accurate to better than ~1e-6). Error
bars come from block averages over frames.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from simcore.analysis import require_model
from simcore.analysis._frames import block_mean, first_after_burn_in, frame_dim, frame_state
from simcore.models import active as model

# 20 bins of 0.05 in packing fraction; the default grid cell and the per-particle radius
# make one particle worth exactly 0.025, so every bin holds two count values (no
# aliasing comb in the histograms)
_DENSITY_BINS = np.linspace(0.0, 1.0, 21)
_QUANTUM = 0.025


def free_abp_msd(t, v0, D_t, D_r) -> np.ndarray:
    """MSD of a free 2D ABP: 4 D_t t + 2 v0² τ_r [t − τ_r (1 − e^{−t/τ_r})], τ_r = 1/D_r."""
    t = np.asarray(t, dtype=float)
    tau = 1.0 / D_r
    return 4 * D_t * t + 2 * v0 ** 2 * tau * (t - tau * (1 - np.exp(-t / tau)))


def free_aoup_msd(t, v0, D_t, gamma) -> np.ndarray:
    """MSD of a free 2D AOUP: 4 D_t t + 4 v0² τ [t − τ (1 − e^{−t/τ})], τ = 1/γ."""
    t = np.asarray(t, dtype=float)
    tau = 1.0 / gamma
    return 4 * D_t * t + 4 * v0 ** 2 * tau * (t - tau * (1 - np.exp(-t / tau)))


def _state_variables(params) -> tuple[str, ...]:
    """What a stored frame's force computation needs (not the drift, forces or images)."""
    return ("coordinates", "theta" if params.propulsion == "abp" else "propulsion")


def exact_epr_per_frame(ds, frames) -> np.ndarray:
    """Per-frame particle averages whose time average is the exact EPR per particle."""
    require_model(ds, "abp", "exact_epr_per_frame")
    params = ds.simcore.params
    out = np.empty(len(frames))
    hypo = params.D_t == 0
    cache: dict = {}
    for m, k in enumerate(frames):
        state = frame_state(ds, k, _state_variables(params))
        state["_work"] = cache.get("_work")
        F, div = model.forces(state, params, divergence=True)
        cache["_work"] = state["_work"]
        if hypo:
            out[m] = -params.mu * div.mean()
        elif params.propulsion == "abp":
            n = np.stack([np.cos(state["theta"]), np.sin(state["theta"])], axis=1)
            out[m] = params.v0 / params.D_t * (params.v0 + params.mu * (n * F).sum(1).mean())
        else:
            b = params.v0 * state["g"] + params.mu * F
            out[m] = (b ** 2).sum(1).mean() / params.D_t + params.mu * div.mean()
    return out


def exact_epr_local(ds, k: int) -> np.ndarray:
    """Per-particle −μ ∇_i·F_i of frame k (1/time) for a hypoelliptic AOUP file (D_t = 0):
    a score-free local decomposition of the propulsion-sector EPR Σ̇_g = −μ⟨∇·F⟩ (its
    particle mean is the frame's term of :func:`exact_epr_per_frame`). It is one local
    decomposition among many: its pointwise values need not match γ|g_i + s_{g_i}|²."""
    require_model(ds, "abp", "exact_epr_local")
    params = ds.simcore.params
    if params.D_t != 0 or params.propulsion != "aoup":
        from simcore._errors import UserInputError

        raise UserInputError(
            "exact_epr_local is defined for hypoelliptic AOUP files (propulsion = 'aoup', "
            f"D_t = 0); this file has propulsion = '{params.propulsion}', D_t = {params.D_t:g}. "
            "Use exact_epr_per_frame for the total EPR of other files.")
    state = frame_state(ds, k, _state_variables(params))
    _, div = model.forces(state, params, divergence=True)
    return -params.mu * div


def _unwrapped(ds, k, L):
    fr = ds.isel({frame_dim(ds): k})
    return (fr["coordinates"].values[:, :2].astype(np.float64)
            + fr["image"].values[:, :2].astype(np.float64) * L)


def mean_squared_displacement(ds, max_particles: int = 20000, n_lags: int = 40) -> xr.Dataset:
    """MSD over particles and time origins at ~log-spaced lags (frames); returns (lag_time, msd)."""
    require_model(ds, "abp", "mean_squared_displacement")
    params = ds.simcore.params
    n_frames = ds.sizes[frame_dim(ds)]
    L = params.box
    sel = np.arange(min(params.n, max_particles))
    traj = np.stack([_unwrapped(ds, k, L)[sel] for k in range(n_frames)])
    lags = np.unique(np.round(np.geomspace(1, max(1, n_frames - 1), n_lags)).astype(int))
    lags = lags[lags < n_frames]
    msd = np.array([((traj[lag:] - traj[:-lag]) ** 2).sum(-1).mean() for lag in lags])
    times = ds["time"].values
    return times[lags] - times[0], msd


def grid_packing_fraction(positions, L, particle_area, cell) -> np.ndarray:
    """Local packing fraction on a square grid of about ``cell`` side (model lengths)."""
    m = max(1, int(L // cell))
    idx = np.floor(positions[:, :2] / (L / m)).astype(int) % m
    counts = np.bincount(idx[:, 0] * m + idx[:, 1], minlength=m * m)
    return counts * particle_area / (L / m) ** 2


def _clusters(positions, L, contact):
    tree = cKDTree(positions[:, :2] % L, boxsize=L)
    pairs = tree.query_pairs(contact, output_type="ndarray")
    n = len(positions)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)


def mips_verdict(hist, centers, min_separation=0.35, min_fraction=0.1) -> dict:
    """Two-phase split of a local-packing-fraction histogram: (mips, dilute, dense).

    Otsu's threshold splits the distribution into two classes; it is MIPS when the class
    means differ by more than ``min_separation`` in packing fraction and the smaller class
    holds at least ``min_fraction`` of the samples. :func:`active_diagnostics` passes the
    area-weighted histogram (each particle weighted by 1/φ_local), so ``min_fraction`` is
    a fraction of the box area: by the lever rule the gas of a MIPS state at φ = 0.6 holds
    only ~6 % of the particles but ~35 % of the area. A homogeneous fluid at φ = 0.6 has a
    unimodal distribution of width ~0.1, whose Otsu classes differ by ~0.15; a phase-
    separated one has a dilute gas (φ ≈ 0.1-0.3) and a dense cluster (φ ≈ 0.85-0.9).
    Returns the class means (dilute, dense) when MIPS, NaN otherwise.
    """
    h = np.asarray(hist, dtype=float)
    total = h.sum()
    if total <= 0:
        return 0, math.nan, math.nan
    best, split = -1.0, None
    for k in range(1, len(h)):
        w0, w1 = h[:k].sum(), h[k:].sum()
        if w0 == 0 or w1 == 0:
            continue
        m0, m1 = (h[:k] * centers[:k]).sum() / w0, (h[k:] * centers[k:]).sum() / w1
        score = w0 * w1 * (m1 - m0) ** 2
        if score > best:
            best, split = score, (w0 / total, w1 / total, m0, m1)
    if split is None:
        return 0, math.nan, math.nan
    f0, f1, m0, m1 = split
    if m1 - m0 > min_separation and min(f0, f1) >= min_fraction:
        return 1, float(m0), float(m1)
    return 0, math.nan, math.nan


def active_diagnostics(ds: xr.Dataset, burn_in: float = 0.5, density_cell: float | None = None,
                       n_blocks: int = 10, progress: bool = False) -> xr.Dataset:
    """MSD, local density and MIPS verdict, clusters and exact EPR of an ABP/AOUP trajectory.

    Parameters
    ----------
    ds : a simcore ``abp`` trajectory (``simcore.open_trajectory``), read frame by frame.
    burn_in : fraction of frames discarded before stationary averages (density, clusters,
        EPR); the MSD uses every frame.
    density_cell : side of the coarse-graining cells (model lengths); default
        a·√(π/0.025) ≈ 11.2 a (a the particle radius), where one particle adds 0.025.
    n_blocks : blocks for the EPR error bar.

    Returns an xarray.Dataset with ``msd`` (dim ``lag``, model length²), ``density_hist``
    (dim ``density``: local packing fraction of grid cells, normalised to unit area),
    ``particle_density_hist`` (same, per particle from neighbour counts within 6.3 a),
    ``mips`` (0/1), ``dense_density``, ``dilute_density`` (packing fractions; NaN without
    MIPS), ``largest_cluster_fraction``, ``epr_exact`` and ``epr_exact_err`` (per particle,
    per model time unit), ``msd_free`` (the closed-form free-particle MSD for reference).
    """
    require_model(ds, "abp", "active_diagnostics")
    params = ds.simcore.params
    dim = frame_dim(ds)
    n_frames = ds.sizes[dim]
    first = first_after_burn_in(n_frames, burn_in)
    frames = np.arange(first, n_frames)
    L = params.box
    a = params.particle_radius
    cell = density_cell or a * math.sqrt(math.pi / _QUANTUM)
    area = math.pi * a * a

    lag_t, msd = mean_squared_displacement(ds)
    if params.propulsion == "abp":
        msd_free = free_abp_msd(lag_t, params.v0, params.D_t, params.D_r)
    else:
        msd_free = free_aoup_msd(lag_t, params.v0, params.D_t, params.gamma)

    grid_hist = np.zeros(len(_DENSITY_BINS) - 1)
    particle_hist = np.zeros(len(_DENSITY_BINS) - 1)
    area_hist = np.zeros(len(_DENSITY_BINS) - 1)
    largest = []
    contact = 1.1 * 2 * a
    local_r = a / math.sqrt(_QUANTUM)  # ≈ 6.3 a
    from simcore._progress import progress as progress_bar

    bar = progress_bar(len(frames), desc="active diagnostics", unit="frames",
                       quiet=not progress)
    for k in frames:
        bar.update(1)
        pos = ds.isel({dim: int(k)})["coordinates"].values.astype(np.float64)
        phi_grid = grid_packing_fraction(pos, L, area, cell)
        grid_hist += np.histogram(np.clip(phi_grid, 0, 1 - 1e-12), _DENSITY_BINS)[0]
        tree = cKDTree(pos[:, :2] % L, boxsize=L)
        counts = tree.query_ball_point(pos[:, :2] % L, local_r, return_length=True)
        phi_local = counts * area / (math.pi * local_r ** 2)
        particle_hist += np.histogram(np.clip(phi_local, 0, 1 - 1e-12), _DENSITY_BINS)[0]
        # each particle stands for the area a/φ_local: phases are weighed by area, as in
        # the lever rule (the gas holds few particles but a large part of the box)
        area_hist += np.histogram(np.clip(phi_local, 0, 1 - 1e-12), _DENSITY_BINS,
                                  weights=1.0 / phi_local)[0]
        if params.potential != "none":
            _, labels = _clusters(pos, L, contact)
            largest.append(np.bincount(labels).max() / params.n)
    bar.close()
    centers = 0.5 * (_DENSITY_BINS[1:] + _DENSITY_BINS[:-1])
    width = np.diff(_DENSITY_BINS)
    mips, dilute, dense = mips_verdict(area_hist, centers)
    epr_series = exact_epr_per_frame(ds, frames)
    epr, epr_err = block_mean(epr_series, n_blocks)

    out = xr.Dataset(
        {
            "msd": ("lag", msd, {"units": "length^2", "long_name": "mean-squared displacement"}),
            "msd_free": ("lag", msd_free, {"units": "length^2",
                                           "long_name": "closed-form MSD of a free particle"}),
            "density_hist": ("density", grid_hist / max(grid_hist.sum(), 1) / width,
                             {"long_name": "distribution of the grid local packing fraction"}),
            "particle_density_hist": ("density", particle_hist / max(particle_hist.sum(), 1)
                                      / width, {"long_name": "distribution of the per-particle "
                                                "local packing fraction (radius 6.3 a)"}),
            "mips": ((), int(mips), {"long_name": "1 if the area-weighted per-particle local "
                                     "density splits into two phases (see mips_verdict)"}),
            "dense_density": ((), dense, {"long_name": "packing fraction of the dense phase "
                                          "(area-weighted class mean)"}),
            "dilute_density": ((), dilute, {"long_name": "packing fraction of the dilute "
                                            "phase (area-weighted class mean)"}),
            "largest_cluster_fraction": ((), float(np.mean(largest)) if largest else 0.0,
                                         {"long_name": "fraction of particles in the largest "
                                          "contact cluster (distance < 1.1 diameters)"}),
            "epr_exact": ((), epr, {"units": "1/time", "method": "sampled",
                                    "long_name": "entropy production rate per particle (k_B = "
                                    "1) by its exact score-free formula, averaged over the "
                                    "frames used: exact in expectation, with sampling error "
                                    "(epr_exact_err)"}),
            "epr_exact_err": ((), epr_err, {"units": "1/time", "long_name": "block-average "
                                            "standard error of epr_exact"}),
            "epr_exact_series": ("frame_used", epr_series,
                                 {"long_name": "per-frame particle average of the EPR estimator"}),
        },
        coords={"lag": ("lag", lag_t, {"units": "time"}),
                "density": ("density", centers, {"long_name": "local packing fraction"}),
                "frame_used": ("frame_used", frames)},
        attrs={"epr_convention": "propulsion (theta or g) even under time reversal; "
               + ("hypoelliptic: theta/g sector only" if params.D_t == 0 else "elliptic"),
               "burn_in_fraction": burn_in, "density_cell": cell},
    )
    return out
