"""Tests of simcore.analysis.schooling (order parameters, schooling entropies, OSI)."""

from __future__ import annotations

import json
import math
import pathlib
import warnings

import numpy as np
import pytest
import xarray as xr

import simcore
import simcore.analysis.schooling as schooling
from simcore.analysis.schooling import schooling_indices, schooling_indices_from_dataset

REFERENCE = pathlib.Path(__file__).parent / "data" / "dewi_metrics_reference.npz"
NAMES = (
    "polarization", "milling", "n_groups", "cohesion_entropy", "polarization_entropy",
    "depth_entropy", "angular_momentum_entropy", "nearest_neighbor_entropy",
    "velocity_correlation_entropy", "shape_entropy", "osi",
)
LN288 = math.log(288)


def _reference():
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


REF = _reference()
CONFIGS = [str(name) for name in REF["config_names"]]


def _config(name):
    return REF[f"{name}__positions"], REF[f"{name}__velocities"], float(REF[f"{name}__box"])


def _values(ds, names=NAMES):
    return np.array([float(ds[name]) for name in names])


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _ball(rng, n, radius, centre):
    direction = _unit(rng.standard_normal((n, 3)))
    return np.asarray(centre) + direction * radius * rng.random((n, 1)) ** (1 / 3)


def _ring_mill(n, radius, centre, speed=2.0):
    angle = 2 * np.pi * np.arange(n) / n
    pos = np.asarray(centre) + radius * np.stack([np.cos(angle), np.sin(angle), 0 * angle], 1)
    vel = speed * np.stack([-np.sin(angle), np.cos(angle), 0 * angle], 1)
    return pos, vel


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# ------------------------------------------------------------------ dewi = anchor


@pytest.mark.parametrize("name", CONFIGS)
def test_dewi_matches_anchor(name):
    pos, vel, box = _config(name)
    expected = REF[f"{name}__values"]
    value_names = [str(v) for v in REF["value_names"]]
    got = _values(schooling_indices(pos, vel, box=box, convention="dewi"), value_names)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    zero = expected == 0  # the anchor's -0.0 is reproduced too
    assert np.array_equal(np.signbit(got[zero]), np.signbit(expected[zero]))


def test_dewi_frames_equal_single_frames():
    names = ["uniform", "aligned_ball", "corner_ball"]  # all N = 150, L = 25
    pos = np.stack([_config(n)[0] for n in names])
    vel = np.stack([_config(n)[1] for n in names])
    times = np.array([0.0, 0.5, 1.0])
    ds = schooling_indices(pos, vel, box=25.0, convention="dewi", time=times)
    assert ds["osi"].dims == ("time",) and np.array_equal(ds["time"].values, times)
    for t in range(len(names)):
        single = schooling_indices(pos[t], vel[t], box=25.0, convention="dewi")
        np.testing.assert_array_equal(_values(ds.isel(time=t)), _values(single))


def test_dewi_blocked_velocity_correlation_equals_full_matrix(monkeypatch):
    _, vel, _ = _config("uniform")
    unit = _unit(vel)
    full = unit @ unit.T
    corr = full[np.triu_indices(len(unit), k=1)]
    expected, _ = np.histogram((corr + 1) / 2, bins=20, range=(0, 1))
    monkeypatch.setattr(schooling.dewi, "_PAIR_BLOCK_ROWS", 7)
    np.testing.assert_array_equal(schooling.dewi._dewi_velocity_correlation_counts(unit), expected)


# --------------------------------------------------------------- known answers


def test_perfect_alignment():
    rng = np.random.default_rng(1)
    pos = _ball(rng, 200, 3.0, [10.0, 10.0, 10.0])
    vel = np.tile([0.6, -2.4, 1.0], (200, 1))
    for box in (None, 20.0):
        ds = schooling_indices(pos, vel, box=box)
        assert float(ds["polarization"]) == pytest.approx(1.0, abs=1e-12)
        for name in ("polarization_entropy", "velocity_correlation_entropy"):
            assert float(ds[name]) == 0.0 and not np.signbit(float(ds[name])), name
        assert not np.any(np.signbit(_values(ds)))  # no -0.0 anywhere


def test_uniform_headings_large_n():
    # Plug-in entropy of N samples spread uniformly over B equal cells:
    # 2 N (ln B - H) ~ chi2(B - 1), so the normalised deficit 1 - H/ln B has mean
    # (B - 1) / (2 N ln B) (Miller-Madow bias) and s.d. sqrt(2 (B - 1)) / (2 N ln B).
    n, cells = 20000, 288
    rng = np.random.default_rng(2)
    box = 60.0
    pos = rng.random((n, 3)) * box
    vel = rng.standard_normal((n, 3))
    ds = schooling_indices(pos, vel, box=box)
    bias = (cells - 1) / (2 * n * math.log(cells))
    sd = math.sqrt(2 * (cells - 1)) / (2 * n * math.log(cells))
    deficit = 1.0 - float(ds["polarization_entropy"])
    assert abs(deficit - bias) < 5 * sd
    # 3 N P^2 ~ chi2(3): P < 4/sqrt(N) fails with probability ~1e-9.
    assert float(ds["polarization"]) < 4 / math.sqrt(n)
    # u_i.u_j of independent uniform headings is uniform on [-1, 1]: every shell ~ 1.
    assert float(ds["velocity_correlation_entropy"]) > 0.995
    # The anchor's sin-weighted bins stay well below 1 (0.946 at N = 2e5, reference).
    assert schooling.dewi._dewi_polarization_entropy(_unit(vel)) < 0.96


@pytest.mark.parametrize("convention, box", [("corrected", None), ("corrected", 30.0),
                                             ("dewi", 30.0)])
def test_ring_mill(convention, box):
    n, radius = 120, 5.0
    pos, vel = _ring_mill(n, radius, [15.0, 15.0, 15.0])
    ds = schooling_indices(pos, vel, box=box, convention=convention)
    # r_hat x u_hat = e_z for every fish: M = 1; tangents of a regular polygon sum to 0.
    assert float(ds["milling"]) == pytest.approx(1.0, abs=1e-12)
    assert float(ds["polarization"]) < 1e-12
    if convention == "corrected":
        # All signed rotations equal +1: one bin.
        assert float(ds["angular_momentum_entropy"]) == 0.0
        assert not np.signbit(float(ds["angular_momentum_entropy"]))
        # Covariance eigenvalues (R^2/2, R^2/2, 0) * N/(N-1): H = ln 2 / ln 3.
        assert float(ds["shape_entropy"]) == pytest.approx(math.log(2) / math.log(3), abs=1e-9)
        assert float(ds["depth_entropy"]) == 0.0  # one flat layer


def test_rotation_invariance_of_corrected_polarization_entropy():
    rng = np.random.default_rng(3)
    for noise in (0.3, 0.05, 1e-3):
        heading = _unit(np.array([1.0, 0.0, 0.0]) + noise * rng.standard_normal((300, 3)))
        rotation = _random_rotation(rng)
        pos = 5.0 * rng.random((300, 3))
        along_x = schooling_indices(pos, heading)
        rotated = schooling_indices(pos @ rotation.T, heading @ rotation.T)
        h_x = float(along_x["polarization_entropy"])
        h_r = float(rotated["polarization_entropy"])
        assert h_x == pytest.approx(h_r, abs=1e-12), noise
        assert float(along_x["polarization"]) == pytest.approx(float(rotated["polarization"]))
    assert h_x == 0.0  # tight school: every heading in the polar cap around the mean


def test_dewi_bin_edge_defect():
    # Headings along +x with tiny noise, equally many in each (sign u_y, sign u_z)
    # quadrant: theta ~ pi/2 and phi ~ pi lie on bin edges, the 4 adjacent cells have the
    # same sin(theta_centre) weight, so the anchor reports ln 4 / ln 288 = 0.245.
    rng = np.random.default_rng(4)
    n = 200
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])[np.arange(n) % 4]
    vel = np.column_stack([np.ones(n), 1e-4 * (0.1 + rng.random((n, 2))) * signs])
    pos = _ball(rng, n, 3.0, [10.0, 10.0, 10.0])
    dewi = schooling_indices(pos, vel, box=20.0, convention="dewi")
    assert float(dewi["polarization_entropy"]) == pytest.approx(math.log(4) / LN288, abs=1e-12)
    assert math.log(4) / LN288 == pytest.approx(0.245, abs=5e-4)
    corrected = schooling_indices(pos, vel, box=20.0)
    assert float(corrected["polarization_entropy"]) == 0.0
    # The same school heading to a dewi cell centre scores -0.0 in the anchor convention.
    theta, phi = 5.5 * np.pi / 12, 11.5 * 2 * np.pi / 24 - np.pi
    centre = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    tilted = _unit(centre + 1e-4 * rng.standard_normal((n, 3)))
    assert float(schooling_indices(pos, tilted, box=20.0, convention="dewi")
                 ["polarization_entropy"]) == 0.0


def test_periodic_mill_straddling_corner():
    rng = np.random.default_rng(5)
    box, n = 30.0, 200
    pos, vel = _ring_mill(n, 6.0, [0.0, 0.0, 0.0])
    pos = pos + 0.3 * rng.standard_normal((n, 3))
    vel = vel + 0.2 * rng.standard_normal((n, 3))
    centred = schooling_indices(pos + box / 2, vel, box=box)
    corner = schooling_indices(np.mod(pos, box), vel, box=box)  # straddles (0, 0, 0)
    open_space = schooling_indices(pos, vel)
    assert float(centred["milling"]) > 0.9
    np.testing.assert_allclose(_values(corner), _values(centred), atol=1e-9)
    # Open space uses the arithmetic centroid, which differs slightly from the circular one.
    np.testing.assert_allclose(_values(open_space), _values(centred), atol=1e-4)
    # The anchor's naive centroid of wrapped positions loses the mill.
    dewi_corner = schooling_indices(np.mod(pos, box), vel, box=box, convention="dewi")
    dewi_centred = schooling_indices(pos + box / 2, vel, box=box, convention="dewi")
    assert float(dewi_centred["milling"]) == pytest.approx(float(centred["milling"]), abs=1e-4)
    assert float(dewi_corner["milling"]) < float(dewi_centred["milling"]) - 0.3


def test_n_groups():
    rng = np.random.default_rng(6)
    one = _ball(rng, 100, 2.0, [10.0, 10.0, 10.0])
    two = np.concatenate([one, _ball(rng, 100, 2.0, [25.0, 10.0, 10.0])])
    vel = rng.standard_normal((200, 3))
    assert float(schooling_indices(one, vel[:100])["n_groups"]) == 1.0
    assert float(schooling_indices(two, vel)["n_groups"]) == 2.0
    assert float(schooling_indices(two, vel, group_distance=5.0)["n_groups"]) == 2.0
    assert float(schooling_indices(two, vel, group_distance=12.0)["n_groups"]) == 1.0
    # A ball cut by the periodic boundary is one group with the box, two without.
    wrapped = np.mod(one - [10.0, 0.0, 0.0], 30.0)
    assert float(schooling_indices(wrapped, vel[:100], box=30.0)["n_groups"]) == 1.0
    assert float(schooling_indices(wrapped, vel[:100])["n_groups"]) == 2.0
    assert float(schooling_indices(wrapped, vel[:100], box=30.0, convention="dewi",
                                   group_distance=3.0)["n_groups"]) == 1.0


def test_shape_entropy_of_a_line_is_zero():
    rng = np.random.default_rng(7)
    s = np.sort(rng.random(50)) * 6.0
    pos = np.array([5.0, 5.0, 5.0]) + s[:, None] * _unit(np.array([1.0, 2.0, 3.0]))
    vel = rng.standard_normal((50, 3))
    for box in (None, 20.0):
        h = float(schooling_indices(pos, vel, box=box)["shape_entropy"])
        assert h == 0.0 and not np.signbit(h)
    # The anchor clamps eigenvalues at 1e-10: a small positive value.
    dewi = float(schooling_indices(pos, vel, box=20.0, convention="dewi")["shape_entropy"])
    assert 0.0 < dewi < 1e-6


def test_cohesion_entropy_is_box_and_scale_free():
    rng = np.random.default_rng(8)
    ball = _ball(rng, 150, 3.0, [0.0, 0.0, 0.0])
    vel = rng.standard_normal((150, 3))
    small = schooling_indices(ball + 12.5, vel, box=25.0)
    large = schooling_indices(ball + 30.0, vel, box=60.0)
    scaled = schooling_indices(2.5 * ball, vel)
    h = float(small["cohesion_entropy"])
    assert 0.0 < h < 1.0
    assert float(large["cohesion_entropy"]) == pytest.approx(h, abs=1e-12)
    assert float(scaled["cohesion_entropy"]) == pytest.approx(h, abs=1e-12)
    dewi_small = schooling_indices(ball + 12.5, vel, box=25.0, convention="dewi")
    dewi_large = schooling_indices(ball + 30.0, vel, box=60.0, convention="dewi")
    assert float(dewi_small["cohesion_entropy"]) != float(dewi_large["cohesion_entropy"])


def test_output_layout_and_errors():
    pos, vel, box = _config("uniform")
    ds = schooling_indices(pos, vel, box=box)
    assert set(ds.data_vars) == set(NAMES)
    assert ds.attrs["convention"] == "corrected"
    for name in NAMES:
        assert ds[name].dims == () and ds[name].dtype == np.float64
        assert ds[name].attrs["units"] == "1" and ds[name].attrs["long_name"]
    weights = sum(schooling.OSI_WEIGHTS.values())
    assert weights == pytest.approx(1.0)
    expected_osi = sum(w * float(ds[k]) for k, w in schooling.OSI_WEIGHTS.items())
    assert float(ds["osi"]) == pytest.approx(expected_osi, abs=1e-15)
    with pytest.raises(ValueError, match="convention"):
        schooling_indices(pos, vel, box=box, convention="Dewi")
    with pytest.raises(ValueError, match="box"):
        schooling_indices(pos, vel, convention="dewi")
    with pytest.raises(ValueError, match="shape"):
        schooling_indices(pos, vel[:-1], box=box)


def _with_at(array, flat_index, value):
    out = array.copy()
    out.flat[flat_index] = value
    return out


@pytest.mark.parametrize("name", ["positions", "velocities"])
@pytest.mark.parametrize("bad, message", [
    (lambda a: _with_at(a, 7, np.nan), "1 NaN or infinite value(s), the first at frame 0, fish 2, axis 1"),
    (lambda a: _with_at(a, 40, -np.inf), "the first at frame 1, fish 0, axis 1"),
    (lambda a: np.full(a.shape, "a"), "got text such as 'a'"),
    (lambda a: a.astype(str), "got text such as"),  # numbers as text are refused too
    (lambda a: np.where(a > 0, a, None), "object array holding None"),
    (lambda a: a + 0j, "array of complex128"),
], ids=["nan", "inf", "text", "numbers-as-text", "none", "complex"])
def test_input_that_is_not_finite_numbers_is_named(name, bad, message):
    """NaN and inf went through into NaN indices (or a KD-tree's ValueError), text and
    objects raised NumPy's own errors: each is an InvalidValueError naming the array."""
    rng = np.random.default_rng(4)
    arrays = {"positions": rng.normal(size=(2, 13, 3)), "velocities": rng.normal(size=(2, 13, 3))}
    arrays[name] = bad(arrays[name])
    with pytest.raises(simcore.UserInputError, match=name) as info:
        schooling_indices(arrays["positions"], arrays["velocities"])
    assert isinstance(info.value, ValueError) and message in str(info.value)


def test_box_and_group_distance_must_be_numbers():
    pos = vel = np.ones((5, 3))
    with pytest.raises(simcore.UserInputError, match="box must be a number, got 'abc'"):
        schooling_indices(pos, vel, box="abc")
    with pytest.raises(simcore.UserInputError, match="group_distance must be a number"):
        schooling_indices(pos, vel, group_distance=[1, 2])


def test_frames_where_no_fish_moves_have_no_heading_order():
    """All speeds 0 gave P = M = 0 (perfect disorder) silently: headings are undefined.
    "corrected": NaN for P, M, the heading entropies and the OSI of those frames, with a
    warning; the positional indices stay. "dewi" keeps the anchor's numbers, warned."""
    rng = np.random.default_rng(5)
    pos = np.stack([_ball(rng, 40, 3.0, [12.0, 12.0, 12.0]) for _ in range(3)])
    vel = rng.normal(size=(3, 40, 3))
    vel[1] = 0.0
    heading = ["polarization", "milling", "polarization_entropy", "angular_momentum_entropy",
               "velocity_correlation_entropy", "osi"]
    with pytest.warns(RuntimeWarning, match=r"No fish moves .* in 1 of 3 frames \(time 0\.5\)"):
        ds = schooling_indices(pos, vel, box=25.0, time=[0.0, 0.5, 1.0])
    for name in NAMES:
        values = ds[name].values
        assert np.isnan(values[1]) == (name in heading), name
        assert np.isfinite(values[[0, 2]]).all(), name
    for t in (0, 2):  # the other frames are untouched
        np.testing.assert_array_equal(_values(ds.isel(time=t)),
                                      _values(schooling_indices(pos[t], vel[t], box=25.0)))
    with pytest.warns(RuntimeWarning, match=r"No fish moves \(every speed < 1e-10\): "):
        one = schooling_indices(pos[1], vel[1])
    assert math.isnan(float(one["polarization"])) and math.isnan(float(one["milling"]))
    with pytest.warns(RuntimeWarning, match="'dewi' keeps the anchor's values"):
        dewi = schooling_indices(pos, vel, box=25.0, convention="dewi")
    assert float(dewi["polarization"][1]) == 0.0 and float(dewi["milling"][1]) == 0.0
    vel[1, 39] = [0.0, 0.0, 1.0]  # one fish moving: defined, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(schooling_indices(pos, vel, box=25.0)["polarization"].values).all()


# ---------------------------------------------------------------- Dataset form


def _trajectory(frame_dim, box, r_a=4.0, n_frames=3, n=60):
    rng = np.random.default_rng(9)
    centre = box / 2 if box else 0.0
    coords = np.stack([_ball(rng, n, 3.0, [centre + t, centre, centre]) for t in range(n_frames)])
    if box:
        coords = np.mod(coords, box)
    vels = _unit(np.array([1.0, 0.2, 0.0]) + 0.3 * rng.standard_normal((n_frames, n, 3)))
    times = 0.1 * np.arange(n_frames) + 2.0
    data = {
        "coordinates": ((frame_dim, "atom", "spatial"), coords),
        "velocities": ((frame_dim, "atom", "spatial"), vels),
        "cell_lengths": ((frame_dim, "cell_spatial"), np.full((n_frames, 3), box or 0.0)),
    }
    coords_xr = {}
    if frame_dim == "time":
        coords_xr["time"] = ("time", times)
    else:
        data["time"] = (("frame",), times)
    ds = xr.Dataset(data, coords=coords_xr)
    ds.attrs["run_parameters"] = json.dumps({"r_a": r_a, "r_r": 1.0})
    return ds, coords, vels, times


@pytest.mark.parametrize("frame_dim, box, convention", [
    ("frame", 25.0, "corrected"), ("time", 25.0, "dewi"), ("frame", None, "corrected"),
])
def test_dataset_form_equals_array_form(frame_dim, box, convention):
    ds, coords, vels, times = _trajectory(frame_dim, box)
    out = schooling_indices_from_dataset(ds, convention=convention)
    assert out["osi"].dims == ("time",) and out.attrs["convention"] == convention
    np.testing.assert_array_equal(out["time"].values, times)
    for t in range(len(times)):
        single = schooling_indices(coords[t], vels[t], box=box, convention=convention,
                                   group_distance=4.0)
        np.testing.assert_array_equal(_values(out.isel(time=t)), _values(single))
    subset = schooling_indices_from_dataset(ds, convention=convention, frames=[2, 0])
    np.testing.assert_array_equal(subset["time"].values, times[[2, 0]])
    np.testing.assert_array_equal(_values(subset.isel(time=0)), _values(out.isel(time=2)))
    # the public function takes the Dataset too
    import simcore

    public = simcore.schooling_indices(ds, convention=convention, frames=[2, 0])
    for t in range(2):
        np.testing.assert_array_equal(_values(public.isel(time=t)), _values(subset.isel(time=t)))
    arrays = simcore.schooling_indices(coords[0], vels[0], box=box, convention=convention,
                                       group_distance=4.0)
    np.testing.assert_array_equal(_values(arrays), _values(out.isel(time=0)))


def test_dataset_form_dewi_needs_a_box():
    ds, *_ = _trajectory("frame", None)
    with pytest.raises(ValueError, match="dewi"):
        schooling_indices_from_dataset(ds, convention="dewi")


def test_dataset_form_reads_a_netcdf_file_lazily(tmp_path):
    ds, coords, vels, times = _trajectory("frame", 25.0)
    path = tmp_path / "trajectory.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path) as lazy:
        out = schooling_indices_from_dataset(lazy, frames=slice(1, None))
    expected = schooling_indices(coords[1:], vels[1:], box=25.0, group_distance=4.0,
                                 time=times[1:])
    np.testing.assert_array_equal(out["osi"].values, expected["osi"].values)
    np.testing.assert_array_equal(out["time"].values, times[1:])


def test_freud_style_wrapper_matches_function():
    from simcore.analysis.schooling import SchoolingIndices

    g = np.random.default_rng(9)
    pos, vel = g.normal(size=(4, 50, 3)), g.normal(size=(4, 50, 3))
    si = SchoolingIndices(convention="corrected").compute(pos, vel)
    want = schooling_indices(pos, vel)
    for name in want.data_vars:
        np.testing.assert_array_equal(si.results[name].values, want[name].values)
    assert si.plot() is not None


def test_dataset_form_names_the_frame_of_bad_values_and_of_no_motion():
    ds, coords, vels, times = _trajectory("frame", 25.0)
    nan = ds.copy(deep=True)
    nan["coordinates"].values[2, 5, 0] = np.nan
    with pytest.raises(simcore.UserInputError, match="coordinates of frame 2 holds 1 NaN"):
        schooling_indices_from_dataset(nan)
    assert np.isfinite(schooling_indices_from_dataset(nan, frames=[0, 1])["osi"]).all()
    still = ds.copy(deep=True)
    still["velocities"].values[1] = 0.0
    with pytest.warns(RuntimeWarning, match=r"in 1 of 3 frames \(frame 1\)"):
        out = schooling_indices_from_dataset(still)
    assert np.isnan(out["polarization"].values).tolist() == [False, True, False]
