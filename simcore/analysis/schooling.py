"""Schooling order parameters, the seven "oceanic" entropies and the OSI.

Two conventions are available:

* ``"dewi"`` reproduces the anchor project dewi-kadita 0.0.4
  (``dewi_kadita/core/metrics.py`` and ``CouzinSystem.compute_rotation``) exactly,
  defects included, so that its published numbers can be recomputed.
* ``"corrected"`` (default) fixes the documented defects; every difference is listed
  in the docstring of :func:`schooling_indices`.

Lengths are in model units, angles in radians; all indices are dimensionless.
Entropies are normalised Shannon entropies ``H / ln(B)`` (natural log, B bins) in [0, 1].
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = [
    "schooling_indices",
    "schooling_indices_from_dataset",
    "SchoolingIndices",
    "OSI_WEIGHTS",
    "CONVENTIONS",
    "VARIABLES",
]

CONVENTIONS = ("dewi", "corrected")

# Output variables, in order: (name, long_name).
VARIABLES = (
    ("polarization", "polarization order parameter P = |<u_i>|"),
    ("milling", "milling (rotation) order parameter M = |<r_ic x u_i>|"),
    ("n_groups", "number of connected groups of fish"),
    ("cohesion_entropy", "school cohesion entropy (nearest-neighbour distances)"),
    ("polarization_entropy", "polarization entropy (headings on the unit sphere)"),
    ("depth_entropy", "depth stratification entropy (z positions)"),
    ("angular_momentum_entropy", "angular momentum entropy (per-fish rotation)"),
    ("nearest_neighbor_entropy", "nearest-neighbour entropy (CV of 5-NN distances)"),
    ("velocity_correlation_entropy", "velocity correlation entropy (pair heading alignment)"),
    ("shape_entropy", "school shape entropy (covariance eigenvalues)"),
    ("osi", "Oceanic Schooling Index (weighted sum of the seven entropies)"),
)
_NAMES = tuple(name for name, _ in VARIABLES)

# OSI weights (anchor's code, commit b5d5a39), used by both conventions; they sum to 1.
OSI_WEIGHTS = {
    "cohesion_entropy": 0.18,
    "polarization_entropy": 0.28,
    "depth_entropy": 0.08,
    "angular_momentum_entropy": 0.08,
    "nearest_neighbor_entropy": 0.10,
    "velocity_correlation_entropy": 0.18,
    "shape_entropy": 0.10,
}

_TINY = 1e-10  # anchor's threshold for a zero vector norm
_KNN = 5  # neighbours in the nearest-neighbour entropy
_DEFAULT_GROUP_FACTOR = 4.0  # default group_distance = 4 x median nearest-neighbour distance
_PAIR_BLOCK_ROWS = 2000  # max rows of the blocked all-pairs correlation ("dewi")

# "corrected" binning
_POL_CELLS = 288  # equal-area cells on the sphere (same count as the anchor's 12 x 24)
_COH_BINS, _COH_RANGE = 25, 2.0  # NND bins on [0, 2 ell), overflow into the last bin
_DEPTH_BINS = 15
_ANG_BINS = 20
_KNN_BINS = 20
_VEL_BINS, _VEL_SHELLS = 20, 5  # 20 alignment bins x 5 distance shells of width ell
_SHAPE_REL_ZERO = 1e-12  # eigenvalue fractions below this count as exactly zero


# ----------------------------------------------------------------------------- helpers


def _entropy_from_counts(counts, n_bins):
    """Normalised plug-in Shannon entropy of a histogram; +0.0 for one occupied bin."""
    counts = np.asarray(counts, dtype=np.float64).ravel()
    total = counts.sum()
    if total <= 0:
        return math.nan
    p = counts[counts > 0] / total
    h = float(-np.sum(p * np.log(p))) / math.log(n_bins)
    return min(max(h, 0.0), 1.0) + 0.0


def _unit(vectors):
    """Rows divided by their norms; rows with norm < 1e-10 stay zero (anchor's rule)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms < _TINY] = 1.0
    return vectors / norms


def _wrap(positions, box):
    """Positions folded into [0, box) (cKDTree's periodic mode needs it)."""
    wrapped = np.mod(positions, box)
    wrapped[wrapped >= box] = 0.0  # np.mod(-tiny, L) can round to L
    return wrapped


def _minimum_image(delta, box):
    if box is None:
        return delta
    return delta - box * np.round(delta / box)


def _tree(positions, box):
    if box is None:
        return cKDTree(positions)
    return cKDTree(positions, boxsize=box)


def _pairs_closer_than(tree, positions, box, radius):
    """All pairs i < j at (minimum-image) distance < radius: (i, j, distance)."""
    pairs = tree.query_pairs(radius, output_type="ndarray")
    if len(pairs) == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, np.zeros(0)
    i, j = pairs[:, 0], pairs[:, 1]
    dist = np.linalg.norm(_minimum_image(positions[j] - positions[i], box), axis=1)
    keep = dist < radius
    return i[keep], j[keep], dist[keep]


def _count_groups(positions, box, group_distance):
    """Connected components of the graph linking fish closer than group_distance."""
    n = len(positions)
    if n <= 1:
        return float(n)
    if box is not None and group_distance > box * math.sqrt(3.0) / 2.0:
        return 1.0  # every minimum-image distance is shorter
    tree = _tree(positions, box)
    i, j, _ = _pairs_closer_than(tree, positions, box, group_distance)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    n_components, _ = connected_components(graph, directed=False)
    return float(n_components)


def _circular_centroid(positions, box):
    """Per-axis circular mean of periodic coordinates, in [0, box)."""
    angles = positions * (2.0 * math.pi / box)
    mean_angle = np.arctan2(np.sin(angles).mean(axis=0), np.cos(angles).mean(axis=0))
    return np.mod(mean_angle * (box / (2.0 * math.pi)), box)


def _relative_to_centroid(positions, box):
    """r_ic: plain mean in open space, circular mean + minimum image in a periodic box."""
    if box is None:
        return positions - positions.mean(axis=0)
    return _minimum_image(positions - _circular_centroid(positions, box), box)


def _milling(r_ic, headings):
    """M = |mean(r_hat x u_hat)|; fish at the centroid contribute zero."""
    cross = np.cross(_unit(r_ic), headings)
    return float(np.linalg.norm(cross.mean(axis=0))), cross


# ------------------------------------------------------------------- "dewi" convention


def _dewi_hist_entropy(values, n_bins, value_range):
    """Anchor's entropy: np.histogram over a range, 0.5 if empty, -0.0 kept."""
    hist, _ = np.histogram(values, bins=n_bins, range=value_range)
    prob = hist / hist.sum() if hist.sum() > 0 else hist
    prob = prob[prob > 0]
    if len(prob) == 0:
        return 0.5
    return float(-np.sum(prob * np.log(prob)) / np.log(n_bins))


def _dewi_velocity_correlation_counts(unit_vel, n_bins=20):
    """Histogram of (u_i.u_j + 1)/2 over i < j, computed in row blocks (bounded memory)."""
    n = len(unit_vel)
    counts = np.zeros(n_bins, dtype=np.int64)
    rows = max(1, min(_PAIR_BLOCK_ROWS, n))
    for start in range(0, n - 1, rows):
        stop = min(start + rows, n - 1)
        block = unit_vel[start:stop] @ unit_vel[start:].T  # (b, n - start)
        local_row = np.arange(stop - start)[:, None]
        local_col = np.arange(n - start)[None, :]
        corr = block[local_col > local_row]
        hist, _ = np.histogram((corr + 1.0) / 2.0, bins=n_bins, range=(0, 1))
        counts += hist
    return counts


def _dewi_polarization_entropy(unit_vel):
    """Anchor's heading entropy: 12 theta x 24 phi bins, counts times sin(theta_centre)."""
    theta = np.arccos(np.clip(unit_vel[:, 2], -1, 1))
    phi = np.arctan2(unit_vel[:, 1], unit_vel[:, 0]) + np.pi
    theta_edges = np.linspace(0, np.pi, 13)
    phi_edges = np.linspace(0, 2 * np.pi, 25)
    hist, _, _ = np.histogram2d(theta, phi, bins=[theta_edges, phi_edges])
    theta_centres = (theta_edges[:-1] + theta_edges[1:]) / 2
    weighted = hist * np.sin(theta_centres)[:, np.newaxis]
    total = weighted.sum()
    if total == 0:
        return 0.5
    prob = weighted.flatten() / total
    prob = prob[prob > 0]
    return float(-np.sum(prob * np.log(prob)) / np.log(288))


def _frame_dewi(positions, velocities, box, group_distance):
    """One frame in the anchor's conventions (metrics.py of dewi-kadita 0.0.4)."""
    n = len(positions)
    pos = _wrap(positions, box)
    unit_vel = _unit(velocities)
    out = {}

    out["polarization"] = float(np.linalg.norm(np.mean(unit_vel, axis=0)))
    centroid = np.mean(pos, axis=0)  # naive mean of wrapped positions
    r = pos - centroid
    out["milling"] = float(np.linalg.norm(np.mean(np.cross(_unit(r), unit_vel), axis=0)))
    out["n_groups"] = _count_groups(pos, box, group_distance)

    # 1 cohesion: periodic NND, 25 bins on [0, L/2]
    if n < 2:
        out["cohesion_entropy"] = 0.5
    else:
        nnd = cKDTree(pos, boxsize=box).query(pos, k=2)[0][:, 1]
        out["cohesion_entropy"] = _dewi_hist_entropy(nnd, 25, (0, box / 2))

    # 2 polarization: 12 theta x 24 phi bins, counts multiplied by sin(theta_centre)
    out["polarization_entropy"] = _dewi_polarization_entropy(unit_vel)

    # 3 depth: wrapped z, 15 bins on [0, L]
    out["depth_entropy"] = _dewi_hist_entropy(pos[:, 2], 15, (0, box))

    # 4 angular momentum: |r_hat x u_hat| about the naive centroid, 20 bins on [0, 1]
    if n < 3:
        out["angular_momentum_entropy"] = 0.5
    else:
        l_mag = np.linalg.norm(np.cross(_unit(r), unit_vel), axis=1)
        out["angular_momentum_entropy"] = _dewi_hist_entropy(l_mag, 20, (0, 1))

    # 5 nearest neighbours: CV (ddof 0) of the 5 periodic NN distances, 20 bins on [0, 2]
    if n < _KNN + 1:
        out["nearest_neighbor_entropy"] = 0.5
    else:
        knn = cKDTree(pos, boxsize=box).query(pos, k=_KNN + 1)[0][:, 1:]
        cv = np.std(knn, axis=1) / (np.mean(knn, axis=1) + 1e-10)
        out["nearest_neighbor_entropy"] = _dewi_hist_entropy(cv, 20, (0, 2))

    # 6 velocity correlation: all i < j pairs, positions ignored, 20 bins on [0, 1]
    if n < 2:
        out["velocity_correlation_entropy"] = 0.5
    else:
        counts = _dewi_velocity_correlation_counts(unit_vel)
        prob = counts / counts.sum() if counts.sum() > 0 else counts
        prob = prob[prob > 0]
        out["velocity_correlation_entropy"] = (
            0.5 if len(prob) == 0 else float(-np.sum(prob * np.log(prob)) / np.log(20))
        )

    # 7 shape: covariance (ddof 1) eigenvalues clamped >= 1e-10
    if n < 4:
        out["shape_entropy"] = 0.5
    else:
        centred = pos - np.mean(pos, axis=0)
        eig = np.sort(np.linalg.eigvalsh(np.cov(centred.T)))[::-1]
        eig = np.maximum(eig, 1e-10)
        q = eig / eig.sum()
        out["shape_entropy"] = float(-np.sum(q * np.log(q)) / np.log(3))

    out["osi"] = _osi(out)
    return out


# -------------------------------------------------------------- "corrected" convention


def _equal_area_zones(n_cells):
    """Zonal equal-area partition of the sphere (Leopardi's EQSP construction).

    Returns (zone_edges, cells_per_zone, first_cell): zone k spans the area fraction
    (1 - z) / 2 in [zone_edges[k], zone_edges[k + 1]) measured from the pole z = 1 and
    is cut into cells_per_zone[k] equal azimuthal sectors. Both polar caps are single
    cells, so a tight cluster of headings around the pole occupies one cell.
    """
    cap_colatitude = math.acos(1.0 - 2.0 / n_cells)
    ideal_collar = math.sqrt(4.0 * math.pi / n_cells)
    n_collars = max(1, round((math.pi - 2 * cap_colatitude) / ideal_collar))
    collar = (math.pi - 2 * cap_colatitude) / n_collars
    counts, carry = [1], 0.0
    for k in range(n_collars):
        top = cap_colatitude + k * collar
        ideal = (math.cos(top) - math.cos(top + collar)) * n_cells / 2.0
        count = int(round(ideal + carry))
        carry += ideal - count
        counts.append(count)
    counts.append(1)
    counts = np.array(counts, dtype=np.int64)
    if counts.sum() != n_cells:  # pragma: no cover - construction invariant
        raise RuntimeError("equal-area partition failed")
    first_cell = np.concatenate([[0], np.cumsum(counts)])
    return first_cell / n_cells, counts, first_cell[:-1]


_ZONE_EDGES, _ZONE_CELLS, _ZONE_FIRST = _equal_area_zones(_POL_CELLS)


def _heading_frame(headings):
    """Orthonormal frame (x', y', z') attached to the headings (rotation-equivariant).

    z' is the mean heading (e_z if it vanishes); x' is the principal axis of the heading
    components perpendicular to z', its sign fixed by a positive third moment.
    """
    mean = headings.mean(axis=0)
    norm = np.linalg.norm(mean)
    z_axis = mean / norm if norm > 1e-12 else np.array([0.0, 0.0, 1.0])
    perp = headings - np.outer(headings @ z_axis, z_axis)
    _, vecs = np.linalg.eigh(perp.T @ perp)
    x_axis = vecs[:, -1] - (vecs[:, -1] @ z_axis) * z_axis
    x_norm = np.linalg.norm(x_axis)
    if x_norm < 1e-12:  # all headings parallel to z': any perpendicular axis
        helper = np.eye(3)[np.argmin(np.abs(z_axis))]
        x_axis = helper - (helper @ z_axis) * z_axis
        x_norm = np.linalg.norm(x_axis)
    x_axis = x_axis / x_norm
    if np.sum((perp @ x_axis) ** 3) < 0:
        x_axis = -x_axis
    return x_axis, np.cross(z_axis, x_axis), z_axis


def _polarization_entropy_corrected(headings):
    """Entropy of headings over 288 equal-area cells oriented by the headings."""
    if len(headings) == 0:
        return math.nan
    x_axis, y_axis, z_axis = _heading_frame(headings)
    z = np.clip(headings @ z_axis, -1.0, 1.0)
    zone = np.searchsorted(_ZONE_EDGES, (1.0 - z) / 2.0, side="right") - 1
    zone = np.clip(zone, 0, len(_ZONE_CELLS) - 1)
    phi = np.mod(np.arctan2(headings @ y_axis, headings @ x_axis), 2.0 * math.pi)
    sector = np.minimum((phi * _ZONE_CELLS[zone] / (2.0 * math.pi)).astype(np.int64),
                        _ZONE_CELLS[zone] - 1)
    cell = _ZONE_FIRST[zone] + sector
    return _entropy_from_counts(np.bincount(cell, minlength=_POL_CELLS), _POL_CELLS)


def _binned(values, n_bins, lo, hi):
    """Bin index of values on [lo, hi] in n_bins equal bins, out-of-range clipped."""
    idx = np.floor((values - lo) * (n_bins / (hi - lo))).astype(np.int64)
    return np.clip(idx, 0, n_bins - 1)


def _frame_corrected(positions, velocities, box, group_distance):
    """One frame in the corrected conventions (see schooling_indices)."""
    n = len(positions)
    pos = _wrap(positions, box) if box is not None else positions
    headings = _unit(velocities)
    moving = np.linalg.norm(velocities, axis=1) >= _TINY
    r_ic = _relative_to_centroid(pos, box)
    out = {}

    out["polarization"] = float(np.linalg.norm(headings.mean(axis=0)))
    out["milling"], cross = _milling(r_ic, headings)

    tree = _tree(pos, box) if n >= 2 else None
    if n >= 2:
        k = min(n - 1, _KNN)
        knn = tree.query(pos, k=k + 1)[0][:, 1:]
        nnd = knn[:, 0]
        ell = float(np.median(nnd))
        if ell <= 0.0:
            ell = float(nnd.max()) if nnd.max() > 0 else 1.0
    else:
        knn = nnd = None
        ell = math.nan

    if group_distance is None:
        group_distance = _DEFAULT_GROUP_FACTOR * ell if n >= 2 else 1.0
    out["n_groups"] = _count_groups(pos, box, group_distance)

    # 1 cohesion: NND in 25 bins on [0, 2 ell), larger NNDs in the last bin
    if n >= 2:
        idx = _binned(nnd, _COH_BINS, 0.0, _COH_RANGE * ell)
        out["cohesion_entropy"] = _entropy_from_counts(
            np.bincount(idx, minlength=_COH_BINS), _COH_BINS)
    else:
        out["cohesion_entropy"] = math.nan

    # 2 polarization: equal-area cells in the headings' own frame
    out["polarization_entropy"] = _polarization_entropy_corrected(headings[moving])

    # 3 depth: z relative to the centroid, 15 bins spanning the school's extent
    z_rel = r_ic[:, 2]
    z_lo, z_hi = float(z_rel.min()), float(z_rel.max())
    if z_hi > z_lo:
        idx = _binned(z_rel, _DEPTH_BINS, z_lo, z_hi)
        out["depth_entropy"] = _entropy_from_counts(
            np.bincount(idx, minlength=_DEPTH_BINS), _DEPTH_BINS)
    else:
        out["depth_entropy"] = 0.0

    # 4 angular momentum: signed (r_hat x u_hat) . m_hat, 20 bins on [-1, 1]
    lever = moving & (np.linalg.norm(r_ic, axis=1) >= _TINY)
    if lever.any():
        total = cross[lever].sum(axis=0)
        t_norm = np.linalg.norm(total)
        axis = total / t_norm if t_norm > 1e-12 else np.array([0.0, 0.0, 1.0])
        idx = _binned(cross[lever] @ axis, _ANG_BINS, -1.0, 1.0)
        out["angular_momentum_entropy"] = _entropy_from_counts(
            np.bincount(idx, minlength=_ANG_BINS), _ANG_BINS)
    else:
        out["angular_momentum_entropy"] = math.nan

    # 5 nearest neighbours: CV (ddof 0) of the 5 NN distances, 20 bins on [0, 2]
    if n >= _KNN + 1:
        mean = knn.mean(axis=1)
        cv = np.divide(knn.std(axis=1), mean, out=np.zeros(n), where=mean > 0)
        idx = _binned(cv, _KNN_BINS, 0.0, 2.0)
        out["nearest_neighbor_entropy"] = _entropy_from_counts(
            np.bincount(idx, minlength=_KNN_BINS), _KNN_BINS)
    else:
        out["nearest_neighbor_entropy"] = math.nan

    # 6 velocity correlation: H(alignment | distance shell) over pairs closer than 5 ell
    out["velocity_correlation_entropy"] = math.nan
    if n >= 2:
        i, j, dist = _pairs_closer_than(tree, pos, box, _VEL_SHELLS * ell)
        both = moving[i] & moving[j]
        i, j, dist = i[both], j[both], dist[both]
        if len(i):
            shell = np.minimum((dist / ell).astype(np.int64), _VEL_SHELLS - 1)
            align = np.einsum("ij,ij->i", headings[i], headings[j])
            idx = _binned((align + 1.0) / 2.0, _VEL_BINS, 0.0, 1.0)
            joint = np.bincount(shell * _VEL_BINS + idx, minlength=_VEL_SHELLS * _VEL_BINS)
            joint = joint.reshape(_VEL_SHELLS, _VEL_BINS)
            h = 0.0
            for counts in joint[joint.sum(axis=1) > 0]:
                h += counts.sum() / len(i) * _entropy_from_counts(counts, _VEL_BINS)
            out["velocity_correlation_entropy"] = min(h, 1.0) + 0.0

    # 7 shape: covariance (ddof 1) eigenvalues of r_ic, rounding-level fractions -> 0
    out["shape_entropy"] = math.nan
    if n >= 2:
        eig = np.clip(np.linalg.eigvalsh(np.cov(r_ic.T)), 0.0, None)
        if eig.sum() > 0:
            q = eig / eig.sum()
            q[q < _SHAPE_REL_ZERO] = 0.0
            out["shape_entropy"] = _entropy_from_counts(q, 3)

    out["osi"] = _osi(out)
    return out


def _osi(values):
    osi = sum(weight * values[name] for name, weight in OSI_WEIGHTS.items())
    return float(osi) + 0.0


# ------------------------------------------------------------------------ public API


def _check_convention(convention):
    if convention not in CONVENTIONS:
        raise ValueError(
            f"convention must be one of {CONVENTIONS!r} ('dewi': dewi-kadita 0.0.4 "
            f"exactly; 'corrected': documented fixes), got {convention!r}")


def _to_dataset(rows, convention, times, box, group_distance):
    data = {name: np.array([row[name] for row in rows], dtype=np.float64) for name in _NAMES}
    if times is None:
        variables = {name: ((), values[0]) for name, values in data.items()}
        coords = {}
    else:
        variables = {name: (("time",), values) for name, values in data.items()}
        coords = {"time": ("time", np.asarray(times))}
    ds = xr.Dataset(variables, coords=coords)
    for name, long_name in VARIABLES:
        ds[name].attrs.update(units="1", long_name=long_name)
    ds.attrs["convention"] = convention
    ds.attrs["box"] = float(box) if box is not None else 0.0
    ds.attrs["group_distance"] = (
        float(group_distance) if group_distance is not None
        else f"{_DEFAULT_GROUP_FACTOR:g} x median nearest-neighbour distance")
    ds.attrs["osi_weights"] = json.dumps(OSI_WEIGHTS)
    return ds


def _frame(positions, velocities, box, convention, group_distance):
    if convention == "dewi":
        if group_distance is None:
            group_distance = _default_group_distance(positions, box)
        return _frame_dewi(positions, velocities, box, group_distance)
    return _frame_corrected(positions, velocities, box, group_distance)


def _default_group_distance(positions, box):
    if len(positions) < 2:
        return 1.0
    pos = _wrap(positions, box) if box is not None else positions
    nnd = _tree(pos, box).query(pos, k=2)[0][:, 1]
    ell = float(np.median(nnd))
    if ell <= 0.0:
        ell = float(nnd.max()) if nnd.max() > 0 else 1.0
    return _DEFAULT_GROUP_FACTOR * ell


def schooling_indices(positions, velocities, box=None, convention="corrected",
                      group_distance=None, time=None):
    """Order parameters, the seven schooling entropies and the OSI of one or more frames.

    Parameters
    ----------
    positions : array (N, 3) or (T, N, 3)
        Fish positions [model length units]. In a periodic box any image may be given.
    velocities : array of the same shape
        Velocities [length/time]; headings are velocities / |velocities| (a velocity
        with norm < 1e-10 gives a zero heading, as in the anchor).
    box : float or None
        Side L of the periodic cube [length], or None for open space.
    convention : {"corrected", "dewi"}
        "dewi" reproduces dewi-kadita 0.0.4 exactly (requires ``box``); "corrected"
        fixes its defects (listed below).
    group_distance : float or None
        Fish closer than this [length] (minimum image when periodic) belong to the same
        group; ``n_groups`` counts the connected components. Default: 4 x the median
        nearest-neighbour distance of the frame (scale free;
        about 2.5 x the percolation distance of a uniform random gas).
    time : array (T,), optional
        Time coordinate for frames (default 0..T-1).

    Returns
    -------
    xarray.Dataset
        float64 variables ``polarization, milling, n_groups, cohesion_entropy,
        polarization_entropy, depth_entropy, angular_momentum_entropy,
        nearest_neighbor_entropy, velocity_correlation_entropy, shape_entropy, osi``;
        0-d for one frame, dimension ``time`` for frames. All dimensionless; entropies
        are H / ln(B) in [0, 1] (natural log).

    Common definitions: P = |<u_i>|, M = |<r_hat_ic x u_i>| with r_ic = c_i - centroid
    (fish at the centroid contribute 0); OSI = .18 H_coh + .28 H_pol + .08 H_dep
    + .08 H_ang + .10 H_nn + .18 H_vel + .10 H_sh (anchor weights, both conventions).

    "dewi" (anchor, on positions wrapped into [0, L)): naive mean centroid; H_coh: NND
    in 25 bins on [0, L/2]; H_pol: 12 theta x 24 phi bins with counts multiplied by
    sin(theta_centre); H_dep: z in 15 bins on [0, L]; H_ang: |r_hat x u| in 20 bins on
    [0, 1]; H_nn: CV (ddof 0) of 5-NN distances in 20 bins on [0, 2]; H_vel: all i<j
    (u_i.u_j + 1)/2 in 20 bins on [0, 1] (computed in row blocks); H_sh: eigenvalues of
    the ddof-1 covariance clamped >= 1e-10; 0.5 for too few fish; -0.0 for one bin;
    values falling outside a histogram range are dropped.

    "corrected" differences (ell = median nearest-neighbour distance of the frame):

    - centroid: open space plain mean; periodic box per-axis circular mean, r_ic by
      minimum image (used by M, H_dep, H_ang, H_sh), so a school straddling the box
      boundary scores as if centred (for a box-filling gas the circular mean, like any
      centre, is arbitrary).
    - H_coh: NND in 25 bins on [0, 2 ell), larger NNDs in the last bin; scale free and
      independent of the box size (dewi's bins scale with L).
    - H_pol: 288 equal-area cells (zonal equal-area partition, single-cell polar caps)
      in a frame attached to the headings (pole = mean heading, azimuth = principal
      perpendicular axis); uniform headings give ~1, an aligned school 0 whatever its
      direction (dewi multiplies counts by sin theta and splits a school along +-x or
      +-y over 4 bins: ln4/ln288). Zero-velocity fish are left out.
    - H_dep: z of r_ic (relative to the centroid, not to the box) in 15 bins spanning
      the school's own vertical extent; a flat layer gives 0.
    - H_ang: signed s_i = (r_hat_ic x u_i) . m_hat, m_hat the mean rotation axis, in 20
      bins on [-1, 1], so counter-rotating fish are distinguished (dewi bins |l_i|).
      Fish at the centroid or not moving are left out.
    - H_nn: same as dewi but without a box in open space; CV of all-zero distances is 0.
    - H_vel: conditional entropy H(C | S) / ln 20 of the pair alignment
      C = (u_i.u_j + 1)/2 (20 bins on [0, 1]) given the distance shell S (5 shells of
      width ell) over the pairs closer than 5 ell (KD-tree, minimum image): weighted by
      pair counts, each shell's alignment entropy. Aligned -> 0, independent uniform
      headings -> ~1. dewi ignores positions and uses all N^2/2 pairs.
    - H_sh: covariance of r_ic; eigenvalue fractions < 1e-12 count as zero (a line
      gives exactly 0, dewi's 1e-10 clamp gives a small positive value).
    - all histograms clip values into their end bins (dewi silently drops e.g. u.u
      or |l_i| rounded above 1); single-bin entropies are +0.0, never -0.0; undefined
      values (too few fish: H_coh, H_vel, H_sh need 2, H_nn 6) are NaN, not 0.5.
    - OSI: same weights and +H_vel as the anchor's code (not the README's
      w_6 (1 - H_vel)): every term then grows with disorder, so OSI ~ 0 means order
      and OSI ~ 1 disorder, as documented; (1 - H_vel) would add 0.18 to a perfectly
      aligned school.

    Cost per frame: O(N log N) for "corrected"; O(N^2) time, O(2000 N) memory for
    "dewi" (its H_vel uses all pairs).
    """
    _check_convention(convention)
    pos = np.asarray(positions, dtype=np.float64)
    vel = np.asarray(velocities, dtype=np.float64)
    if pos.shape != vel.shape or pos.ndim not in (2, 3) or pos.shape[-1] != 3:
        raise ValueError(
            "positions and velocities must have the same shape (N, 3) or (T, N, 3); got "
            f"{pos.shape} and {vel.shape}")
    if pos.shape[-2] < 1:
        raise ValueError("at least one fish is needed")
    if box is not None:
        box = float(box)
        if not box > 0 or not math.isfinite(box):
            raise ValueError(f"box must be a positive side length or None, got {box}")
    elif convention == "dewi":
        raise ValueError(
            "convention 'dewi' needs a periodic box (box=L): the anchor's metrics are "
            "only defined in its periodic cube (bins on [0, L], periodic KD-tree)")
    if group_distance is not None:
        group_distance = float(group_distance)
        if not group_distance > 0:
            raise ValueError(f"group_distance must be positive, got {group_distance}")

    if pos.ndim == 2:
        row = _frame(pos, vel, box, convention, group_distance)
        return _to_dataset([row], convention, None, box, group_distance)
    n_frames = pos.shape[0]
    times = np.arange(n_frames) if time is None else np.asarray(time)
    if times.shape != (n_frames,):
        raise ValueError(f"time must have shape ({n_frames},), got {times.shape}")
    rows = [_frame(pos[t], vel[t], box, convention, group_distance)
            for t in range(n_frames)]
    return _to_dataset(rows, convention, times, box, group_distance)


def schooling_indices_from_dataset(ds, convention="corrected", frames=None):
    """:func:`schooling_indices` of a simcore trajectory, read one frame at a time.

    ``ds`` (xarray.Dataset, possibly lazily opened) has ``coordinates`` and
    ``velocities`` (frame|time, atom, spatial), ``cell_lengths`` (frame|time,
    cell_spatial) [length; all three equal to L > 0 when periodic, 0 in open space] and
    the attribute ``run_parameters`` (JSON with the attraction radius ``r_a``, used as
    ``group_distance``). The frame dimension is ``time`` (with a ``time`` coordinate) or
    ``frame`` (with an optional ``time`` variable). ``frames``: indices or a slice of
    frames to analyse (default all). Returns the Dataset of :func:`schooling_indices`
    with dimension ``time``.
    """
    _check_convention(convention)
    if isinstance(ds, xr.Dataset) and ds.attrs.get("program") == "simcore":
        from simcore.analysis import require_model

        require_model(ds, "couzin", "schooling_indices_from_dataset")
    if not isinstance(ds, xr.Dataset) or "coordinates" not in ds:
        from simcore._errors import UserInputError

        raise UserInputError(
            "schooling_indices_from_dataset takes an xarray Dataset with coordinates and "
            "velocities, e.g. simcore.open_trajectory(path) of a couzin run (got "
            f"{type(ds).__name__}).")
    if "time" in ds["coordinates"].dims:
        frame_dim = "time"
    elif "frame" in ds["coordinates"].dims:
        frame_dim = "frame"
    else:
        raise ValueError("coordinates must have a 'frame' or 'time' dimension")
    try:
        r_a = float(json.loads(ds.attrs["run_parameters"])["r_a"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError("ds.attrs['run_parameters'] must be JSON with 'r_a'") from err

    n_frames = ds.sizes[frame_dim]
    if frames is None:
        indices = np.arange(n_frames)
    elif isinstance(frames, slice):
        indices = np.arange(n_frames)[frames]
    else:
        indices = np.arange(n_frames)[np.asarray(frames, dtype=np.int64)]

    has_time = "time" in ds.variables and ds["time"].dims == (frame_dim,)
    rows, times, boxes = [], [], set()
    for index in indices:
        index = int(index)
        frame = {frame_dim: index}
        pos = _frame_array(ds["coordinates"].isel(frame))
        vel = _frame_array(ds["velocities"].isel(frame))
        # an amber file without a periodic axis has no cell variables (open space)
        cell = (np.asarray(ds["cell_lengths"].isel(frame).values, dtype=np.float64)
                if "cell_lengths" in ds.variables else np.zeros(3))
        if np.all(cell > 0):
            if not np.allclose(cell, cell[0], rtol=1e-12, atol=0):
                raise ValueError(f"only cubic boxes are supported, got {cell}")
            box = float(cell[0])
        elif np.all(cell == 0):
            box = None
        else:
            raise ValueError(f"cell_lengths must be all > 0 or all 0, got {cell}")
        if box is None and convention == "dewi":
            raise ValueError("convention 'dewi' needs a periodic run (cell_lengths > 0)")
        boxes.add(box)
        rows.append(_frame(pos, vel, box, convention, r_a))
        if has_time:
            times.append(ds["time"].isel({frame_dim: index}).values[()])
        else:
            times.append(index)
    box_attr = boxes.pop() if len(boxes) == 1 else None
    out = _to_dataset(rows, convention, np.asarray(times), box_attr, r_a)
    if has_time:
        out["time"].attrs.update(ds["time"].attrs)
    return out


def _frame_array(da):
    if "atom" in da.dims and "spatial" in da.dims:
        da = da.transpose("atom", "spatial")
    return np.asarray(da.values, dtype=np.float64)


class SchoolingIndices:
    """freud-style wrapper: parameters in the constructor, :meth:`compute`, read-only
    :attr:`results`, :meth:`plot`.

    >>> si = SchoolingIndices(convention="corrected").compute(positions, velocities)
    >>> si.results["osi"]
    """

    def __init__(self, convention="corrected", box=None, group_distance=None):
        _check_convention(convention)
        self._convention, self._box, self._group_distance = convention, box, group_distance
        self._results = None

    def compute(self, positions, velocities, time=None):
        """Compute the indices of one frame (N, 3) or of frames (T, N, 3); returns self."""
        self._results = schooling_indices(positions, velocities, box=self._box,
                                          convention=self._convention,
                                          group_distance=self._group_distance, time=time)
        return self

    @property
    def results(self) -> xr.Dataset:
        """The Dataset of :func:`schooling_indices` (a copy; computing again replaces it)."""
        if self._results is None:
            raise RuntimeError("call compute() first")
        return self._results.copy()

    def plot(self, ax=None):
        """P, M and OSI over time (frames) on ``ax`` (a new figure if None); returns ax."""
        import matplotlib.pyplot as plt

        res = self.results
        if ax is None:
            ax = plt.figure().add_subplot()
        if "time" not in res.dims:
            names = ["polarization", "milling", "osi"]
            ax.bar(names, [float(res[n]) for n in names])
        else:
            for name in ("polarization", "milling", "osi"):
                ax.plot(res["time"], res[name], label=name)
            ax.set_xlabel("time")
            ax.legend()
        ax.set_ylim(0, 1)
        return ax
