"""Every model x format opened by the real readers (MDAnalysis, MDTraj, ASE, OVITO, xarray):
positions, box (or its absence), time and velocities checked against the file.

The readers come with the ``interop`` extra (``pip install -e .[interop]``, done by
``make test``); a reader that is not installed skips its tests. docs/interop.md states
the same table; tests/test_docs.py runs its snippets.
"""

from __future__ import annotations

import warnings

import netCDF4
import numpy as np
import pytest
import xarray as xr

import simcore
from simcore.interop import ase_frames, container, write_topology

MODELS = {
    "couzin": dict(preset="dynamic_parallel", steps=60, write_every=20, overrides={"n": 12}),
    "abp": dict(steps=60, write_every=20, overrides={"n": 16}),
    "harddisc": dict(steps=6, write_every=2, overrides={"n": 12}),
    "linear": dict(steps=60, write_every=20, overrides={"n": 10}),
    # one periodic and one walled axis: the cell holds the period, 0 for the walls
    "harddisc-xperiodic": dict(steps=6, write_every=2,
                               overrides={"n": 12, "x_boundary": "periodic"}),
}
FORMATS = ("netcdf4", "amber")
CASES = [(m, f) for m in MODELS for f in FORMATS]
PERIODIC = {"couzin": False, "abp": True, "harddisc": False, "linear": False,
            "harddisc-xperiodic": True}
HAS_VELOCITIES = {"couzin": True, "abp": False, "harddisc": True, "linear": False,
                  "harddisc-xperiodic": True}


@pytest.fixture(scope="session")
def interop_files(tmp_path_factory):
    """Small runs of every model in both formats, and a PDB topology for each."""
    folder = tmp_path_factory.mktemp("interop")
    files = {}
    for model, kw in MODELS.items():
        for fmt in FORMATS:
            out = simcore.run(model.split("-")[0], out=folder / f"{model}_{fmt}.nc", seed=1,
                              format=fmt, **kw)
            files[model, fmt] = (out, write_topology(out, folder / f"{model}_{fmt}.pdb"))
    return files


def _truth(path):
    """What the file holds, read with netCDF4 directly."""
    with netCDF4.Dataset(path) as nc:
        x = np.asarray(nc["coordinates"][:], dtype=float)
        t = np.asarray(nc["time"][:], dtype=float)
        cell = (np.asarray(nc["cell_lengths"][:], dtype=float)
                if "cell_lengths" in nc.variables else None)
        vel = (np.asarray(nc["velocities"][:], dtype=float)
               if "velocities" in nc.variables else None)
    return x, t, cell, vel


# ----------------------------------------------------------------------- layout
@pytest.mark.parametrize("model,fmt", CASES)
def test_layout(interop_files, model, fmt):
    path, _ = interop_files[model, fmt]
    x, t, cell, vel = _truth(path)
    assert (vel is not None) == HAS_VELOCITIES[model]
    if fmt == "amber" and not PERIODIC[model]:
        assert cell is None  # the AMBER convention: no periodic axis, no cell variables
    else:
        assert cell is not None and (cell.any() == PERIODIC[model])
    with netCDF4.Dataset(path) as nc:
        assert nc.Conventions == "AMBER" and nc.ConventionVersion == "1.0"
        assert nc.file_format == {"netcdf4": "NETCDF4", "amber": "NETCDF3_64BIT_OFFSET"}[fmt]
        for name, units in (("time", "picosecond"), ("coordinates", "angstrom")):
            assert nc[name].units == units
        if vel is not None:
            assert nc["velocities"].units == "angstrom/picosecond"
        for v in nc.variables.values():
            assert "scale_factor" not in v.ncattrs()
        assert len(nc.simcore_boundary.split()) == 3
        if model in ("abp", "linear"):
            assert "drift" in nc.variables


# ----------------------------------------------------------------------- MDAnalysis
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("model,fmt", CASES)
def test_mdanalysis(interop_files, model, fmt):
    mda = pytest.importorskip("MDAnalysis")
    path, top = interop_files[model, fmt]
    if fmt == "netcdf4":  # MDAnalysis reads NETCDF3 only: loud, never wrong
        with pytest.raises((TypeError, ValueError, OSError)), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mda.Universe(str(top), str(path))
        return
    x, t, cell, vel = _truth(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # guessed masses, PDB without box
        u = mda.Universe(str(top), str(path))
    assert len(u.trajectory) == len(t) and len(u.atoms) == x.shape[1]
    assert u.trajectory.has_velocities == (vel is not None)
    for k, ts in enumerate(u.trajectory):
        np.testing.assert_allclose(u.atoms.positions, x[k], rtol=1e-6, atol=1e-6)
        assert ts.time == pytest.approx(t[k])
        if PERIODIC[model]:
            np.testing.assert_allclose(ts.dimensions, [*cell[k], 90, 90, 90], rtol=1e-6)
        else:
            assert ts.dimensions is None
        if vel is not None:
            np.testing.assert_allclose(u.atoms.velocities, vel[k], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------- MDTraj
@pytest.mark.parametrize("model,fmt", CASES)
def test_mdtraj(interop_files, model, fmt):
    md = pytest.importorskip("mdtraj")
    path, top = interop_files[model, fmt]
    x, t, cell, _ = _truth(path)
    traj = md.load(str(path), top=str(top))
    # MDTraj works in nm: it divides the file's "angstrom" (model lengths) by 10
    np.testing.assert_allclose(traj.xyz * 10, x, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(traj.time, t)
    if cell is None:
        assert traj.unitcell_vectors is None  # no box: distances are plain
    else:
        np.testing.assert_allclose(traj.unitcell_lengths * 10, cell, rtol=1e-6)
    # the docs' recipe (docs/interop.md): drop an all-zero box; give every other zero
    # length (z of a 2D model, a walled axis) a period far beyond the system
    if traj.unitcell_lengths is not None and not traj.unitcell_lengths.any():
        traj.unitcell_vectors = None
    if traj.unitcell_lengths is not None:
        lengths = traj.unitcell_lengths.copy()
        lengths[lengths == 0] = 1e6
        traj.unitcell_lengths = lengths
    pairs = np.array([[0, 1], [2, 5], [3, x.shape[1] - 1]])
    dist = md.compute_distances(traj, pairs) * 10
    d = x[:, pairs[:, 0]] - x[:, pairs[:, 1]]
    if PERIODIC[model]:
        box = cell[:, None, :]
        d = np.where(box > 0, d - box * np.round(d / np.where(box > 0, box, 1)), d)
    np.testing.assert_allclose(dist, np.linalg.norm(d, axis=-1), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------- ASE
@pytest.mark.parametrize("model,fmt", CASES)
def test_ase_netcdftrajectory(interop_files, model, fmt):
    ase_io = pytest.importorskip("ase.io")
    path, _ = interop_files[model, fmt]
    x, t, cell, vel = _truth(path)
    if cell is None:  # ASE's reader needs the cell variables: a loud KeyError
        with pytest.raises(KeyError, match="cell_lengths"):
            ase_io.read(str(path), index=":", format="netcdftrajectory")
        return
    frames = ase_io.read(str(path), index=":", format="netcdftrajectory")
    assert len(frames) == len(t)
    for k, atoms in enumerate(frames):
        np.testing.assert_allclose(atoms.positions, x[k], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(atoms.pbc, cell[k] > 0)
        for d in np.flatnonzero(cell[k] > 0):
            assert atoms.cell[d, d] == pytest.approx(cell[k, d])
        if vel is not None:
            np.testing.assert_allclose(atoms.get_velocities(), vel[k], rtol=1e-5, atol=1e-6)
        else:
            assert atoms.get_momenta().any() == np.False_


@pytest.mark.parametrize("model,fmt", CASES)
def test_ase_frames_with_container(interop_files, model, fmt):
    pytest.importorskip("ase")
    path, _ = interop_files[model, fmt]
    x, t, cell, vel = _truth(path)
    box = container(path)
    frames = ase_frames(path)
    assert len(frames) == len(t)
    for k, atoms in enumerate(frames):
        np.testing.assert_allclose(atoms.positions, x[k], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(atoms.pbc, [b == "periodic" for b in box["boundary"]])
        assert atoms.info["time"] == pytest.approx(t[k])
        if vel is not None:
            np.testing.assert_allclose(atoms.get_velocities(), vel[k], rtol=1e-5, atol=1e-6)
    if model.startswith("harddisc"):  # the container [0, kL] x [0, L_y] is the cell
        p = simcore.open_trajectory(path).simcore.params
        np.testing.assert_allclose(np.diag(frames[0].cell)[:2], [p.L_x, p.L_y])
        assert box["boundary"] == (p.x_boundary, p.y_boundary, "none")
        np.testing.assert_array_equal(frames[0].pbc, [p.x_boundary == "periodic", False, False])


# ----------------------------------------------------------------------- OVITO
@pytest.mark.parametrize("model,fmt", CASES)
def test_ovito(interop_files, model, fmt):
    ovito_io = pytest.importorskip("ovito.io")
    path, _ = interop_files[model, fmt]
    x, t, cell, vel = _truth(path)
    pipeline = ovito_io.import_file(str(path))
    assert pipeline.source.num_frames == len(t)
    for k in range(len(t)):
        data = pipeline.compute(k)
        np.testing.assert_allclose(np.asarray(data.particles.positions), x[k], rtol=1e-6,
                                   atol=1e-6)
        if vel is not None:
            np.testing.assert_allclose(np.asarray(data.particles.velocities), vel[k],
                                       rtol=1e-6, atol=1e-6)
        else:
            assert "Velocity" not in data.particles
        if PERIODIC[model]:
            assert data.cell.pbc == tuple(bool(c > 0) for c in cell[k])
            periodic = cell[k] > 0
            np.testing.assert_allclose(np.diag(np.asarray(data.cell)[:, :3])[periodic],
                                       cell[k][periodic], rtol=1e-6)
        else:
            assert data.cell is None or not any(data.cell.pbc)


# ----------------------------------------------------------------------- xarray
@pytest.mark.parametrize("model,fmt", CASES)
def test_xarray_conventions(interop_files, model, fmt):
    path, _ = interop_files[model, fmt]
    x, t, cell, _ = _truth(path)
    with xr.open_dataset(path) as ds:
        assert {"time", "frame", "atom", "spatial", "cell_spatial", "cell_angular"} <= set(
            ds.coords)
        assert ds["time"].dims == ("frame",)
        np.testing.assert_array_equal(ds["frame"].values, np.arange(len(t)))
        np.testing.assert_array_equal(ds["atom"].values, np.arange(x.shape[1]))
        assert list(ds["spatial"].values) == ["x", "y", "z"]
        assert list(ds["cell_spatial"].values) == ["a", "b", "c"]
        if cell is not None:
            np.testing.assert_array_equal(ds["cell_lengths"].sel(cell_spatial="a").values,
                                          cell[:, 0])
    with simcore.open_trajectory(path) as ds:
        assert ds["coordinates"].dims == ("time", "atom", "spatial")
        np.testing.assert_allclose(ds["coordinates"].values, x, rtol=1e-7)
        assert list(ds["cell_angular"].values) == ["alpha", "beta", "gamma"]
        assert float(ds["cell_angles"].sel(cell_angular="beta")[0]) == 90.0
        expected = cell if cell is not None else np.zeros((len(t), 3))
        np.testing.assert_array_equal(ds["cell_lengths"].values, expected)
        np.testing.assert_array_equal(ds["frame"].values, np.arange(len(t)))
        # honest units in simcore's view; the file keeps the AMBER strings
        assert ds["coordinates"].attrs["units"] == "1"
        assert ds["coordinates"].attrs["model_units"] == "model length unit"
        assert ds["time"].attrs["file_units"] == "picosecond"


def test_open_mfdataset_by_coords(interop_files, tmp_path):
    """A set of runs combines by coordinates: each run gets a `run` coordinate (one
    preprocess line), frames and atoms align by their index coordinates."""
    pytest.importorskip("dask")
    paths = []
    for seed in (1, 2, 3):
        paths.append(simcore.run("abp", out=tmp_path / f"abp_{seed}.nc", seed=seed,
                                 **MODELS["abp"]))

    def pre(ds):
        seed = simcore.interop.run_parameters(ds.encoding["source"])["seed"]
        return ds.expand_dims(seed=[seed])

    with xr.open_mfdataset(paths, combine="by_coords", preprocess=pre,
                           data_vars="minimal", coords="minimal", compat="override",
                           combine_attrs="drop_conflicts") as ds:
        assert ds["coordinates"].dims == ("seed", "frame", "atom", "spatial")
        assert list(ds["seed"].values) == [1, 2, 3]
        for k, p in enumerate(paths):
            np.testing.assert_array_equal(ds["coordinates"].isel(seed=k).values,
                                          _truth(p)[0].astype(np.float32))
    # consecutive pieces of one run combine along frame by coordinates alone
    with xr.open_dataset(paths[0]) as full:
        full.load()
    parts = [tmp_path / "a.nc", tmp_path / "b.nc"]
    full.isel(frame=slice(0, 2)).to_netcdf(parts[0])
    full.isel(frame=slice(2, None)).to_netcdf(parts[1])
    with xr.open_mfdataset(parts[::-1], combine="by_coords") as ds:
        np.testing.assert_array_equal(ds["coordinates"].values, full["coordinates"].values)
        np.testing.assert_array_equal(ds["time"].values, full["time"].values)


def test_topology_pdb(interop_files):
    path, top = interop_files["harddisc", "amber"]
    lines = [line for line in top.read_text().splitlines() if line.startswith("ATOM")]
    assert len(lines) == 12
    assert lines[0][76:78].strip() == "H" and lines[0][17:20] == "PAR"
    x = _truth(path)[0][0]
    np.testing.assert_allclose(float(lines[3][30:38]), x[3, 0], atol=1e-3)


def test_cli_export_topology(interop_files, tmp_path):
    from conftest import assert_one_paragraph, run_cli

    path, _ = interop_files["couzin", "amber"]
    out = tmp_path / "top.pdb"
    run_cli("export", path, "--topology", out, check_rc=0)
    assert sum(line.startswith("ATOM") for line in out.read_text().splitlines()) == 12
    assert_one_paragraph(run_cli("export", path, "--topology", out), "exists")


def test_info_linear_is_not_3d(interop_files):
    from conftest import run_cli

    path, _ = interop_files["linear", "netcdf4"]
    proc = run_cli("info", path, check_rc=0)
    assert "3D" not in proc.stdout and "2-component state" in proc.stdout
    with netCDF4.Dataset(path) as nc:  # the attributes say so too: 2 components, z padding
        d = nc.dimensions["component"].size
        assert int(nc.simcore_ndim) == min(d, 3)
        assert nc.simcore_boundary.split()[d:] == ["none"] * (3 - d)


def test_analyses_read_amber_files_without_cell(interop_files):
    """Plain xarray views of amber files without a periodic axis (no cell variables) work
    in the analyses and the accessor, and give the netcdf4 file's numbers."""
    from simcore.analysis.schooling import schooling_indices_from_dataset

    with xr.open_dataset(interop_files["couzin", "amber"][0]) as a, \
            xr.open_dataset(interop_files["couzin", "netcdf4"][0]) as b:
        assert "cell_lengths" not in a.variables
        np.testing.assert_array_equal(a.simcore.box, [0, 0, 0])
        ia, ib = schooling_indices_from_dataset(a), schooling_indices_from_dataset(b)
        np.testing.assert_array_equal(ia["polarization"].values, ib["polarization"].values)


def test_resume_refuses_a_part_of_another_layout(tmp_path, monkeypatch):
    """A partial file written with another variable layout (e.g. an abp run interrupted
    before `velocities` became `drift`) is refused with a clear message, not a crash."""
    import dataclasses

    from simcore.config import resolve
    from simcore.driver import run_model
    from simcore.models import get_engine

    out = tmp_path / "old.nc"
    kw = dict(steps=200, write_every=10, overrides={"n": 16, "checkpoint_every": 2})
    params, settings, preset = resolve("abp", **kw)
    engine = get_engine("abp")
    old = dataclasses.replace(
        engine,
        extra_variables=lambda p: {**engine.extra_variables(p), "old": (
            ("atom", "spatial"), "1", "a variable of the old layout")},
        frame=lambda s, p: {**engine.frame(s, p), "old": np.zeros((16, 3))})
    monkeypatch.setattr("simcore.driver.get_engine", lambda name: old)
    with pytest.raises(KeyboardInterrupt):
        run_model("abp", params, settings, out, preset=preset, quiet=True, stop_after_frames=5)
    monkeypatch.undo()
    with pytest.raises(simcore.UserInputError, match="another file layout"):
        simcore.run("abp", out=out, resume=True, **kw)


@pytest.mark.parametrize("model", ["couzin", "harddisc", "linear"])
def test_analyses_carry_the_frame_coordinate(interop_files, model):
    with simcore.open_trajectory(interop_files[model, "amber"][0]) as ds:
        out = ds.simcore.analyze()
        assert out["frame"].dims == ("time",)
        np.testing.assert_array_equal(out["frame"].values,
                                      ds["frame"].sel(time=out["time"].values).values)


# ----------------------------------------------------------------------- export
def _export_truth(path):
    """Positions, velocities, image flags, time, steps and container of a file."""
    from simcore.models import get_model

    x, t, cell, vel = _truth(path)
    with netCDF4.Dataset(path) as nc:
        image = np.asarray(nc["image"][:]) if "image" in nc.variables else None
        ndim = int(nc.simcore_ndim)
        dtype = nc["coordinates"].dtype  # the text formats round-trip it exactly
    with simcore.open_trajectory(path) as ds:
        dt = get_model(ds.simcore.model).time_per_step(ds.simcore.params)
        cell = ds["cell_lengths"].values  # zeros where an amber file has no cell
    box = container(path)
    periodic = np.array([b == "periodic" for b in box["boundary"]])
    walls = np.array([b == "wall" for b in box["boundary"]])
    x = x.astype(dtype)
    vel = vel.astype(dtype) if vel is not None else None
    return dict(x=x, t=t, cell=cell, vel=vel, image=image, ndim=ndim, box=box,
                periodic=periodic, walls=walls, steps=np.rint(t / dt).astype(int))


@pytest.mark.parametrize("model,fmt", CASES)
def test_export_gsd(interop_files, model, fmt, tmp_path):
    """Read back with gsd.hoomd: positions (shifted by the stored origin), box, step,
    time, velocities and images; a non-periodic axis's period is at least twice the
    extent, so no minimum image changes a distance."""
    hoomd = pytest.importorskip("gsd.hoomd")
    from simcore.io.export import export_trajectory

    path, _ = interop_files[model, fmt]
    truth = _export_truth(path)
    out = export_trajectory(path, tmp_path / "out.gsd", "gsd")
    assert not list(tmp_path.glob("*.part"))
    x = truth["x"]
    with hoomd.open(str(out)) as traj:
        assert len(traj) == len(truth["t"])
        for k, frame in enumerate(traj):
            origin = frame.log["simcore/origin"]
            assert frame.particles.N == x.shape[1] and frame.particles.types == ["H"]
            np.testing.assert_allclose(frame.particles.position + origin, x[k], atol=2e-5)
            assert frame.configuration.step == truth["steps"][k]
            assert frame.log["simcore/time"][0] == truth["t"][k]
            assert frame.configuration.dimensions == (2 if truth["ndim"] <= 2 else 3)
            side = np.asarray(frame.configuration.box[:3], dtype=float)
            ndim = frame.configuration.dimensions
            for d in range(ndim):
                if truth["periodic"][d]:
                    assert side[d] == pytest.approx(truth["cell"][k, d], rel=1e-6)
                    # HOOMD's centred box holds every particle
                    assert np.all(np.abs(frame.particles.position[:, d]) <= side[d] / 2 + 1e-5)
                else:
                    assert side[d] >= 2 * np.ptp(x[:, :, d]) - 1e-5
            if ndim == 2:
                assert side[2] == 0.0
            if truth["vel"] is not None:
                np.testing.assert_array_equal(frame.particles.velocity, truth["vel"][k])
            else:
                assert not frame.particles.velocity.any()  # gsd's default: zeros
            if truth["image"] is not None:
                np.testing.assert_array_equal(frame.particles.image, truth["image"][k])


@pytest.mark.parametrize("model,fmt", CASES)
def test_export_extxyz(interop_files, model, fmt, tmp_path):
    """Read back with ase.io (extxyz): the file's float32 positions exactly, pbc only
    on periodic axes, the cell = the periodic box or the walls, Time and Step."""
    ase_io = pytest.importorskip("ase.io")
    from simcore.io.export import export_trajectory

    path, _ = interop_files[model, fmt]
    truth = _export_truth(path)
    out = export_trajectory(path, tmp_path / "out.extxyz", "extxyz")
    frames = ase_io.read(str(out), index=":", format="extxyz")
    x = truth["x"]
    assert len(frames) == len(truth["t"])
    for k, atoms in enumerate(frames):
        np.testing.assert_array_equal(atoms.positions.astype(x.dtype), x[k])
        np.testing.assert_array_equal(atoms.pbc, truth["periodic"])
        assert atoms.info["Time"] == truth["t"][k] and atoms.info["Step"] == truth["steps"][k]
        np.testing.assert_array_equal(atoms.arrays["id"], np.arange(1, x.shape[1] + 1))
        lengths = atoms.cell.lengths()
        box = truth["box"]
        for d in range(3):
            if truth["periodic"][d]:
                assert lengths[d] == pytest.approx(truth["cell"][k, d], rel=1e-12)
            elif truth["walls"][d]:
                assert lengths[d] == pytest.approx(box["hi"][d] - box["lo"][d], rel=1e-12)
            else:
                assert lengths[d] == 0.0
        if truth["vel"] is not None:
            np.testing.assert_array_equal(atoms.arrays["velo"].astype(x.dtype), truth["vel"][k])
        else:
            assert "velo" not in atoms.arrays and "momenta" not in atoms.arrays


@pytest.mark.parametrize("model,fmt", CASES)
def test_export_lammpstrj(interop_files, model, fmt, tmp_path):
    """Read back with ASE's LAMMPS text-dump reader: positions, pbc and bounds (pp
    periodic, ff walls, ss shrink-wrapped open space, pp -0.5..0.5 for 2D z), and the
    velocities (ASE converts LAMMPS metal units Å/ps, the model units as stored)."""
    ase_io = pytest.importorskip("ase.io")
    from ase import units

    from simcore.io.export import export_trajectory

    path, _ = interop_files[model, fmt]
    truth = _export_truth(path)
    out = export_trajectory(path, tmp_path / "out.lammpstrj", "lammpstrj")
    frames = ase_io.read(str(out), index=":", format="lammps-dump-text")
    x = truth["x"]
    assert len(frames) == len(truth["t"])
    text = out.read_text()
    assert text.count("ITEM: TIMESTEP") == len(truth["t"])
    steps = [int(s.split("\n")[1]) for s in text.split("ITEM: TIMESTEP")[1:]]
    assert steps == list(truth["steps"])
    for k, atoms in enumerate(frames):
        np.testing.assert_array_equal(atoms.positions.astype(x.dtype), x[k])
        lo = atoms.get_celldisp().ravel()
        hi = lo + atoms.cell.lengths()
        for d in range(3):
            if d >= truth["ndim"]:  # LAMMPS's 2D box: periodic z of side 1 around 0
                assert atoms.pbc[d] and (lo[d], hi[d]) == (-0.5, 0.5)
            elif truth["periodic"][d]:
                assert atoms.pbc[d] and hi[d] - lo[d] == pytest.approx(truth["cell"][k, d])
            elif truth["walls"][d]:
                assert not atoms.pbc[d]
                assert (lo[d], hi[d]) == pytest.approx((truth["box"]["lo"][d],
                                                        truth["box"]["hi"][d]))
            else:  # shrink-wrapped
                assert not atoms.pbc[d]
                assert (lo[d], hi[d]) == pytest.approx((x[k, :, d].min(), x[k, :, d].max()))
        if truth["vel"] is not None:
            np.testing.assert_allclose(atoms.get_velocities() * 1000 * units.fs,
                                       truth["vel"][k], rtol=1e-6, atol=1e-6)
        else:
            assert atoms.get_velocities() is None or not atoms.get_velocities().any()


def test_cli_export_formats(interop_files, tmp_path, capsys):
    """The CLI: --to with -o, an existing output refused (exit 2) and replaced with
    --overwrite, inconsistent options and a foreign input refused in one paragraph."""
    from simcore.cli import main

    def cli(*args):
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err

    path, _ = interop_files["abp", "netcdf4"]
    out = tmp_path / "abp.lammpstrj"
    assert cli("export", path, "--to", "lammpstrj", "-o", out, "--quiet")[0] == 0
    first = out.read_text()
    code, err = cli("export", path, "--to", "lammpstrj", "-o", out)
    assert code == 2 and "exists" in err and "Traceback" not in err
    assert cli("export", path, "--to", "lammpstrj", "-o", out, "--overwrite", "--quiet")[0] == 0
    assert out.read_text() == first
    code, err = cli("export", path, "--to", "gsd")
    assert code == 2 and "-o" in err
    code, err = cli("export", path)
    assert code == 2 and "Nothing to export" in err
    code, err = cli("export", path, "--to", "gsd", "-o", path, "--overwrite")
    assert code == 2 and "input" in err
    foreign = tmp_path / "foreign.nc"
    foreign.write_text("not netcdf")
    code, err = cli("export", foreign, "--to", "extxyz", "-o", tmp_path / "f.extxyz")
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "f.extxyz").exists() and not list(tmp_path.glob("*.part"))
    top = tmp_path / "both.pdb"
    assert cli("export", path, "--to", "extxyz", "-o", tmp_path / "both.extxyz",
               "--topology", top, "--quiet")[0] == 0
    assert top.exists() and (tmp_path / "both.extxyz").exists()
    # a subprocess, as users run it: exit status and message
    from conftest import run_cli

    proc = run_cli("export", path, "--to", "gsd", "-o", tmp_path / "abp.gsd", check_rc=0)
    assert "wrote" in proc.stdout


def test_export_gsd_of_a_one_component_linear_model(tmp_path):
    """x lives on one axis: a 2D HOOMD box whose padding y still has a positive period."""
    hoomd = pytest.importorskip("gsd.hoomd")
    from simcore.io.export import export_trajectory

    path = simcore.run("linear", out=tmp_path / "x.nc", steps=20, write_every=10, seed=1,
                       overrides={"n": 5, "B": [[1.0]], "D": [[1.0]]})
    truth = _export_truth(path)
    assert truth["ndim"] == 1
    with hoomd.open(str(export_trajectory(path, tmp_path / "x.gsd", "gsd"))) as traj:
        for k, frame in enumerate(traj):
            assert frame.configuration.dimensions == 2
            assert frame.configuration.box[0] > 0 and frame.configuration.box[1] > 0
            np.testing.assert_allclose(frame.particles.position + frame.log["simcore/origin"],
                                       truth["x"][k], atol=1e-5)
