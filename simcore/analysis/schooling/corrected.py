"""The corrected definitions of the seven entropies (``convention="corrected"``, the
default): equal-area heading cells, frame-invariant bins."""

from __future__ import annotations

import math

import numpy as np

from simcore.analysis.schooling._constants import (_ANG_BINS, _COH_BINS, _COH_RANGE, _DEFAULT_GROUP_FACTOR,
                                                   _DEPTH_BINS, _KNN, _KNN_BINS, _POL_CELLS,
                                                   _SHAPE_REL_ZERO, _TINY, _VEL_BINS, _VEL_SHELLS,
                                                   OSI_WEIGHTS)
from simcore.analysis.schooling._geometry import (_count_groups, _entropy_from_counts, _milling,
                                                  _pairs_closer_than, _relative_to_centroid, _tree, _unit,
                                                  _wrap)


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
    if not moving.any():  # no headings: not "no order" (see schooling_indices)
        out["polarization"] = out["milling"] = math.nan

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
