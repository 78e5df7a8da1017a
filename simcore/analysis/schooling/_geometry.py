"""Geometry of one frame: periodic wrapping, neighbour trees, groups, centroids, milling."""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from simcore.analysis.schooling._constants import _TINY


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
