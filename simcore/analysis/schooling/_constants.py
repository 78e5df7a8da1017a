"""Names, weights and binning of the schooling indices."""

from __future__ import annotations





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
