"""The dewi-kadita definitions of the seven entropies (``convention="dewi"``), reproduced."""

from __future__ import annotations


import numpy as np
from scipy.spatial import cKDTree

from simcore.analysis.schooling._constants import _KNN, _PAIR_BLOCK_ROWS
from simcore.analysis.schooling._geometry import _count_groups, _unit, _wrap
from simcore.analysis.schooling.corrected import _osi


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
