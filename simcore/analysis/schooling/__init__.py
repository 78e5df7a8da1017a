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
import numbers
import warnings

import numpy as np
import xarray as xr

from simcore._errors import InvalidValueError
from simcore.analysis.schooling._constants import (_DEFAULT_GROUP_FACTOR, _NAMES, _TINY, CONVENTIONS,
                                                   OSI_WEIGHTS, VARIABLES)
from simcore.analysis.schooling._geometry import _tree, _wrap
from simcore.analysis.schooling.dewi import _frame_dewi
from simcore.analysis.schooling.corrected import _frame_corrected

__all__ = [
    "schooling_indices",
    "schooling_indices_from_dataset",
    "SchoolingIndices",
    "OSI_WEIGHTS",
    "CONVENTIONS",
    "VARIABLES",
]


def _check_convention(convention):
    if convention not in CONVENTIONS:
        raise InvalidValueError(
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


def _numeric_array(name, values, where=""):
    """``values`` as a float64 array, or an :class:`InvalidValueError` naming ``name`` (and
    ``where``, e.g. " of frame 3") for text, objects that are not numbers, NaN or inf:
    NumPy would raise its own errors, or let NaN through into every index."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as err:  # e.g. ragged nested lists
        raise InvalidValueError(
            f"{name}{where} must be an array of numbers of shape (N, 3) or (T, N, 3); no "
            f"array can be made of it ({err}).") from None
    what = None
    if array.dtype.kind == "O":
        what = next((f"an object array holding {value!r}" for value in array.flat
                     if not isinstance(value, numbers.Real)), None)
    elif array.dtype.kind in "US":
        what = "text" + (f" such as {str(array.flat[0])!r}" if array.size else "")
    elif array.dtype.kind not in "iuf":
        what = f"an array of {array.dtype}"
    if what is not None:
        raise InvalidValueError(
            f"{name}{where} must hold numbers (int or float), got {what}; convert it (or "
            "the file it was read from) to numbers first.")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        first = [int(i) for i in np.argwhere(bad)[0]]
        axes = {2: ("fish", "axis"), 3: ("frame", "fish", "axis")}.get(array.ndim)
        at = (", ".join(f"{axis} {i}" for axis, i in zip(axes, first)) if axes
              else f"index {tuple(first)}")
        raise InvalidValueError(
            f"{name}{where} holds {int(bad.sum())} NaN or infinite value(s), the first at "
            f"{at}: the indices are undefined there. Leave out those frames (or fish) first, "
            "e.g. the last frames of a run that became unstable.")
    return array


def _number(name, value):
    """``float(value)``, or an :class:`InvalidValueError` naming ``name``."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"{name} must be a number, got {value!r}") from None


def _without_motion(velocities):
    """Per frame (or for the one frame): True where no fish moves (every speed < 1e-10)."""
    return ~np.any(np.linalg.norm(velocities, axis=-1) >= _TINY, axis=-1)


def _frames_text(labels, n_frames):
    """" in 2 of 10 frames (time 0.5, time 0.6)": where no fish moves, for the warning."""
    shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
    return f" in {len(labels)} of {n_frames} frames ({shown})"


def _warn_without_motion(where, convention):
    """One warning for the frames (``where``) in which no fish moves."""
    if convention == "dewi":
        values = ("convention 'dewi' keeps the anchor's values there (P = M = 0 and the "
                  "heading entropies of zero vectors), which describe no order")
    else:
        values = ("polarization, milling, the heading entropies (polarization, angular "
                  "momentum, velocity correlation) and the OSI are NaN there")
    warnings.warn(f"No fish moves (every speed < 1e-10){where}: headings are undefined, so "
                  f"{values}.", RuntimeWarning, stacklevel=3)


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
                      group_distance=None, time=None) -> xr.Dataset:
    """Order parameters, the seven schooling entropies and the OSI of one or more frames.

    Parameters
    ----------
    positions : array (N, 3) or (T, N, 3)
        Fish positions [model length units]. In a periodic box any image may be given.
    velocities : array of the same shape
        Velocities [length/time]; headings are velocities / |velocities| (a velocity
        with norm < 1e-10 gives a zero heading, as in the anchor). Both must be finite
        numbers: text, other objects, NaN or inf raise :class:`InvalidValueError`
        (a :class:`simcore.UserInputError`) naming the array and the first bad entry.
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

    A frame in which no fish moves (every speed < 1e-10) has no headings: "corrected"
    gives NaN for P, M, H_pol, H_ang, H_vel and the OSI there (the positional indices
    stay defined); "dewi" keeps the anchor's values (P = M = 0 ...). Either way one
    ``RuntimeWarning`` names those frames.

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
      values (too few fish: H_coh, H_vel, H_sh need 2, H_nn 6; no fish moving: P, M,
      H_pol, H_ang, H_vel) are NaN, not 0.5 (or 0 for P and M).
    - OSI: same weights and +H_vel as the anchor's code (not the README's
      w_6 (1 - H_vel)): every term then grows with disorder, so OSI ~ 0 means order
      and OSI ~ 1 disorder, as documented; (1 - H_vel) would add 0.18 to a perfectly
      aligned school.

    Cost per frame: O(N log N) for "corrected"; O(N^2) time, O(2000 N) memory for
    "dewi" (its H_vel uses all pairs).
    """
    _check_convention(convention)
    pos = _numeric_array("positions", positions)
    vel = _numeric_array("velocities", velocities)
    if pos.shape != vel.shape or pos.ndim not in (2, 3) or pos.shape[-1] != 3:
        raise InvalidValueError(
            "positions and velocities must have the same shape (N, 3) or (T, N, 3); got "
            f"{pos.shape} and {vel.shape}")
    if pos.shape[-2] < 1:
        raise InvalidValueError("at least one fish is needed")
    if box is not None:
        box = _number("box", box)
        if not box > 0 or not math.isfinite(box):
            raise InvalidValueError(f"box must be a positive side length or None, got {box}")
    elif convention == "dewi":
        raise InvalidValueError(
            "convention 'dewi' needs a periodic box (box=L): the anchor's metrics are "
            "only defined in its periodic cube (bins on [0, L], periodic KD-tree)")
    if group_distance is not None:
        group_distance = _number("group_distance", group_distance)
        if not group_distance > 0:
            raise InvalidValueError(f"group_distance must be positive, got {group_distance}")

    if pos.ndim == 2:
        if _without_motion(vel):
            _warn_without_motion("", convention)
        row = _frame(pos, vel, box, convention, group_distance)
        return _to_dataset([row], convention, None, box, group_distance)
    n_frames = pos.shape[0]
    times = np.arange(n_frames) if time is None else np.asarray(time)
    if times.shape != (n_frames,):
        raise InvalidValueError(f"time must have shape ({n_frames},), got {times.shape}")
    still = np.flatnonzero(_without_motion(vel))
    if len(still):
        numeric = np.issubdtype(times.dtype, np.number)
        labels = [f"frame {t}" if time is None else f"time {times[t]:g}" if numeric
                  else f"time {times[t]}" for t in still]
        _warn_without_motion(_frames_text(labels, n_frames), convention)
    rows = [_frame(pos[t], vel[t], box, convention, group_distance)
            for t in range(n_frames)]
    return _to_dataset(rows, convention, times, box, group_distance)


def schooling_indices_from_dataset(ds, convention="corrected", frames=None,
                                   progress: bool = False) -> xr.Dataset:
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
        raise InvalidValueError("coordinates must have a 'frame' or 'time' dimension")
    try:
        r_a = float(json.loads(ds.attrs["run_parameters"])["r_a"])
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidValueError("ds.attrs['run_parameters'] must be JSON with 'r_a'") from err

    n_frames = ds.sizes[frame_dim]
    if frames is None:
        indices = np.arange(n_frames)
    elif isinstance(frames, slice):
        indices = np.arange(n_frames)[frames]
    else:
        indices = np.arange(n_frames)[np.asarray(frames, dtype=np.int64)]

    has_time = "time" in ds.variables and ds["time"].dims == (frame_dim,)
    rows, times, boxes, still = [], [], set(), []
    from simcore._progress import progress as progress_bar

    bar = progress_bar(len(indices), desc="schooling indices", unit="frames",
                       quiet=not progress)
    for index in indices:
        bar.update(1)
        index = int(index)
        frame = {frame_dim: index}
        pos = _numeric_array("coordinates", _frame_array(ds["coordinates"].isel(frame)),
                             f" of frame {index}")
        vel = _numeric_array("velocities", _frame_array(ds["velocities"].isel(frame)),
                             f" of frame {index}")
        # an amber file without a periodic axis has no cell variables (open space)
        cell = (np.asarray(ds["cell_lengths"].isel(frame).values, dtype=np.float64)
                if "cell_lengths" in ds.variables else np.zeros(3))
        if np.all(cell > 0):
            if not np.allclose(cell, cell[0], rtol=1e-12, atol=0):
                raise InvalidValueError(f"only cubic boxes are supported, got {cell}")
            box = float(cell[0])
        elif np.all(cell == 0):
            box = None
        else:
            raise InvalidValueError(f"cell_lengths must be all > 0 or all 0, got {cell}")
        if box is None and convention == "dewi":
            raise InvalidValueError("convention 'dewi' needs a periodic run (cell_lengths > 0)")
        boxes.add(box)
        rows.append(_frame(pos, vel, box, convention, r_a))
        if has_time:
            times.append(ds["time"].isel({frame_dim: index}).values[()])
        else:
            times.append(index)
        if _without_motion(vel):
            still.append(f"frame {index}")
    bar.close()
    if still:
        _warn_without_motion(_frames_text(still, len(indices)), convention)
    box_attr = boxes.pop() if len(boxes) == 1 else None
    out = _to_dataset(rows, convention, np.asarray(times), box_attr, r_a)
    if has_time:
        out["time"].attrs.update(ds["time"].attrs)
    return out


def _frame_array(da):
    if "atom" in da.dims and "spatial" in da.dims:
        da = da.transpose("atom", "spatial")
    return da.values


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

    def compute(self, positions, velocities, time=None) -> "SchoolingIndices":
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

    def plot(self, ax=None):  # noqa: ANN201 - a matplotlib Axes (imported lazily)
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
