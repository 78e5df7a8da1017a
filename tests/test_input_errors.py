"""Issue 12 item 3: every traceback found on bad input is exit 2 with one paragraph.

run_parameters with invalid values, analyses given another model's file, wrong-typed
API arguments, outputs on a full disk, in /proc, /sys or on a read-only file system.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil

import netCDF4
import numpy as np
import pytest

import simcore
from simcore._errors import UserInputError
from simcore.io.write_errors import SPACE_ERRNOS
from conftest import assert_one_paragraph, run_cli, run_cli_here


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny run of every model. Hard discs and ABP first: pytest-xdist starts this file
    beside test_interop, whose fixture runs Couzin first, so on a fresh clone the two
    workers compile different kernels at once instead of the same ones twice (each then
    loads the other's from Numba's cache)."""
    root = tmp_path_factory.mktemp("models")
    out = {
        "harddisc": simcore.run("harddisc", overrides={"n": 50, "t_end": 2.0},
                                out=root / "h.nc"),
        "abp": simcore.run("abp", steps=20, write_every=10, out=root / "a.nc",
                           overrides={"n": 16, "potential": "none", "phi": 0.1}),
        "linear": simcore.run("linear", steps=20, write_every=10, overrides={"n": 10},
                              out=root / "l.nc"),
        "couzin": simcore.run("couzin", steps=20, write_every=10, overrides={"n": 10},
                              out=root / "c.nc"),
    }
    return out


def _with_run_parameters(src, dst, edit):
    shutil.copy(src, dst)
    with netCDF4.Dataset(dst, "a") as ds:
        text = ds.run_parameters
        ds.run_parameters = edit(text)
    return dst


def _set(**values):
    def edit(text):
        record = json.loads(text)
        record.update(values)
        return json.dumps(record)
    return edit


# ----------------------------------------------------------------- invalid run_parameters
BAD_RUN_PARAMETERS = [
    (_set(n=-5), ["holds values that this version of simcore does not accept",
                  "n: Input should be greater than or equal to 1 (got -5)"]),
    (_set(n=True, steps="x"), ["n: Input should be a valid integer (got True)",
                               "steps: Input should be a valid integer (got 'x')"]),
    (_set(dt=float("nan")), ["dt: Input should be a finite number"]),
    (lambda text: "not json {", ["is not simcore JSON"]),
    (lambda text: "[1, 2]", ["is not simcore JSON"]),
    (lambda text: '{"n": 3}', ["is not simcore JSON"]),
    (_set(model="foo"), ["names the model 'foo', which this version of simcore does not know"]),
    (_set(model=5), ["names no valid model (got 5)"]),
]


# every damage through `info`; each of the three kinds (invalid values, not simcore JSON, an
# unknown model) through `analyze` and `plot` too: the command's main() in this process
@pytest.mark.parametrize("command,edit,fragments",
                         [("info", *case) for case in BAD_RUN_PARAMETERS]
                         + [(command, *BAD_RUN_PARAMETERS[k]) for command in ("analyze", "plot")
                            for k in (0, 3, 6)])
def test_invalid_run_parameters_exit_2(files, tmp_path, capsys, edit, fragments, command):
    bad, args = _command_on_damaged_parameters(files, tmp_path, command, edit)
    proc = run_cli_here(capsys, *args)
    assert_one_paragraph(proc, str(bad), *fragments)
    assert proc.stdout == ""  # nothing half-printed before the error


@pytest.mark.parametrize("command", ["info", "analyze", "plot"])
def test_invalid_run_parameters_exit_2_from_the_real_command(files, tmp_path, command):
    """The same refusal from the installed command in its own process (exit code and
    stderr as a shell sees them)."""
    edit, fragments = BAD_RUN_PARAMETERS[0]
    bad, args = _command_on_damaged_parameters(files, tmp_path, command, edit)
    proc = run_cli(*args)
    assert_one_paragraph(proc, str(bad), *fragments)
    assert proc.stdout == ""


def _command_on_damaged_parameters(files, tmp_path, command, edit):
    """A copy of the Couzin file with ``edit`` applied to its run_parameters, and the
    ``command``'s arguments on it."""
    bad = _with_run_parameters(files["couzin"], tmp_path / "bad.nc", edit)
    return bad, [command, bad] + (["-o", tmp_path / "p.png"] if command == "plot" else [])


def test_invalid_run_parameters_in_python(files, tmp_path):
    bad = _with_run_parameters(files["abp"], tmp_path / "bad.nc", _set(phi=2.0))
    with simcore.open_trajectory(bad) as ds:
        with pytest.raises(UserInputError, match="phi: Input should be less than"):
            _ = ds.simcore.params
        with pytest.raises(UserInputError, match="does not accept"):
            ds.simcore.analyze()


# ----------------------------------------------------------------- another model's file
def _analyses():
    from simcore.analysis import active, boltzmann, linear, schooling

    return {
        "abp": [active.active_diagnostics, active.mean_squared_displacement,
                lambda ds: active.exact_epr_per_frame(ds, [0]),
                lambda ds: active.exact_epr_local(ds, 0)],
        "harddisc": [boltzmann.boltzmann_entropy],
        "linear": [linear.linear_diagnostics],
        "couzin": [schooling.schooling_indices_from_dataset],
    }


@pytest.mark.parametrize("expected", ["abp", "harddisc", "linear", "couzin"])
def test_analyses_given_another_models_file_name_both_models(files, expected):
    for held, path in files.items():
        if held == expected:
            continue
        with simcore.open_trajectory(path) as ds:
            for fn in _analyses()[expected]:
                with pytest.raises(UserInputError) as info:
                    fn(ds)
                msg = str(info.value)
                assert f"analyses '{expected}' trajectories" in msg
                assert f"a run of model '{held}'" in msg and str(path) in msg


def test_analyses_refuse_paths_and_foreign_datasets(files):
    import xarray as xr

    from simcore.analysis.active import active_diagnostics, exact_epr_local

    with pytest.raises(UserInputError, match="takes an xarray Dataset opened with"):
        active_diagnostics(str(files["abp"]))
    with pytest.raises(UserInputError, match="no run_parameters attribute"):
        active_diagnostics(xr.Dataset())
    with simcore.open_trajectory(files["abp"]) as ds:
        with pytest.raises(UserInputError, match="hypoelliptic AOUP"):
            exact_epr_local(ds, 0)
        with pytest.raises(UserInputError, match="has no option convention; it takes burn_in"):
            ds.simcore.analyze(convention="dewi")


# ----------------------------------------------------------------- API argument types
@pytest.mark.parametrize("kwargs,fragment", [
    (dict(out=None), "out must be the output file"),
    (dict(out=""), "out must be the output file"),
    (dict(out=3), "out must be the output file"),
    (dict(out="x.nc", steps="10"), "steps must be an int or None (got '10')"),
    (dict(out="x.nc", seed=True), "seed must be an int or None (got True)"),
    (dict(out="x.nc", overwrite="yes"), "overwrite must be True or False"),
    (dict(out="x.nc", overrides=5), "overrides must be a dict"),
    (dict(out="x.nc", threads=1.5), "threads must be an int or None"),
])
def test_run_refuses_wrong_typed_arguments(tmp_path, monkeypatch, kwargs, fragment):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        simcore.run("couzin", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_run_accepts_numpy_integers_and_refuses_numpy_floats_for_ints(tmp_path):
    out = simcore.run("couzin", steps=np.int64(10), write_every=np.int32(5), out=tmp_path / "a.nc",
                      overrides={"n": np.int64(8), "dt": np.float32(0.1)})
    with simcore.open_trajectory(out) as ds:
        assert ds.sizes["atom"] == 8 and ds.simcore.run_settings.steps == 10
    with pytest.raises(UserInputError, match="n: Input should be a valid integer"):
        simcore.run("couzin", out=tmp_path / "b.nc", overrides={"n": np.float64(8)})
    with pytest.raises(UserInputError, match="model must be a model name"):
        simcore.run(None, out=tmp_path / "c.nc")


# ----------------------------------------------------------------- outputs that cannot be written
@pytest.mark.parametrize("command,name", [("analyze", "d.nc"), ("plot", "p.png"),
                                          ("plot", "p.gif")])
def test_output_on_a_full_disk_exits_2_and_leaves_nothing(files, tiny_fs, command, name):
    out = tiny_fs / name
    args = [command, files["couzin"], "-o", out] + (["--animate"] if name.endswith("gif") else [])
    proc = run_cli(*args)
    assert_one_paragraph(proc, f"Writing {out} failed", "the disk is full",
                         "Nothing was written")
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["fill"]


@pytest.mark.parametrize("to", ["gsd", "lammpstrj"])
def test_export_on_a_full_disk_exits_2_and_leaves_nothing(files, tiny_fs, to):
    out = tiny_fs / f"e.{to}"
    proc = run_cli("export", files["harddisc"], "--to", to, "-o", out)
    assert_one_paragraph(proc, f"Writing {out} failed", "the disk is full",
                         "Nothing was written")
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["fill"]


def test_topology_on_a_full_disk_leaves_no_partial_pdb(tiny_fs):
    """The PDB was written in place: a full disk left a truncated file (then 'already
    exists' on the rerun)."""
    big = simcore.run("couzin", steps=1, overrides={"n": 2000}, out=tiny_fs.parent / "b.nc")
    out = tiny_fs / "t.pdb"
    proc = run_cli("export", big, "--topology", out)
    assert_one_paragraph(proc, f"Writing {out} failed", "the disk is full")
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["fill"]


def test_output_on_a_read_only_file_system(files, read_only_fs):
    out = read_only_fs / "d.nc"
    proc = run_cli("analyze", files["couzin"], "-o", out)
    assert_one_paragraph(proc, f"Cannot write {out}", "read-only", "Nothing was written")
    assert "full" not in proc.stderr
    assert "osi" not in proc.stdout  # refused before the analysis


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("command,out", [("analyze", "/proc/x.nc"), ("plot", "/proc/x.png")])
def test_output_in_proc_exits_2(files, command, out):
    proc = run_cli(command, files["couzin"], "-o", out)
    assert_one_paragraph(proc, f"Cannot write {out}")
    assert "full" not in proc.stderr


@pytest.mark.parametrize("code,fragment", [
    (errno.EACCES, "you may not create files there"),
    (errno.EROFS, "read-only"),
    (errno.ENOSPC, "the disk is full"),
    (errno.EDQUOT, "quota"),
    (errno.EFBIG, "file-size limit"),
    (errno.EIO, "choose another output"),
])
def test_write_errors_are_classified_by_errno(files, tmp_path, monkeypatch, code, fragment):
    import xarray as xr

    from simcore.io import results

    def failing(self, path, *a, **k):
        open(path, "wb").close()  # a partial file that must be removed
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", failing)
    out = tmp_path / "r.nc"
    with pytest.raises(UserInputError, match=fragment) as info:
        results.write_dataset(xr.Dataset({"a": ("x", np.zeros(3))}), out)
    if code not in SPACE_ERRNOS:
        assert "full" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_netcdf_library_error_is_not_called_a_full_disk_with_space_left(tmp_path, monkeypatch):
    import xarray as xr

    from simcore.io import results

    def failing(self, path, *a, **k):
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", failing)
    with pytest.raises(UserInputError) as info:
        results.write_dataset(xr.Dataset({"a": ("x", np.zeros(3))}), tmp_path / "r.nc")
    assert "NetCDF: HDF error" in str(info.value) and "full" not in str(info.value)


# ----------------------------------------------------------------- other bad input
def test_simcore_file_without_its_variables_exits_2(files, tmp_path, capsys):
    with netCDF4.Dataset(files["couzin"]) as src:
        rp = src.run_parameters
    bad = tmp_path / "novars.nc"
    with netCDF4.Dataset(bad, "w") as nc:
        nc.program = "simcore"
        nc.run_parameters = rp
        nc.createDimension("frame", None)
        nc.createDimension("atom", 10)
        nc.createDimension("spatial", 3)
        nc.createVariable("coordinates", "f4", ("frame", "atom", "spatial"))
    for args in (["info", bad], ["analyze", bad], ["plot", bad, "-o", tmp_path / "p.png"]):
        proc = run_cli_here(capsys, *args)
        assert_one_paragraph(proc, "lacks the variable(s) time that")


def test_sweep_file_with_a_non_string_out_exits_2(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('model = "couzin"\nout = 5\n[grid]\nn = [10]\n')
    proc = run_cli_here(capsys, "sweep", spec, "--dry-run")
    assert_one_paragraph(proc, "out must be a string (got 5)")


@pytest.mark.parametrize("name", [".", "..", "/"])
def test_run_output_without_a_file_name_is_refused(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match="is not a file name; give one such as run.nc"):
        simcore.run("couzin", out=name, steps=10, overrides={"n": 5})
    assert list(tmp_path.iterdir()) == []


def test_lock_error_reads_as_one_sentence(tmp_path):
    from simcore.io.lock import OutputLock

    with pytest.raises(UserInputError) as info:
        with OutputLock(tmp_path / "missing" / "run.nc.lock", f"The output {tmp_path}/run.nc"):
            pass
    assert f"for the output {tmp_path}/run.nc (No such file" in str(info.value)


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_analyze_output_is_a_folder(files, tmp_path, capsys, overwrite):
    # said with or without --overwrite: "already exists, pass --overwrite" would mislead
    proc = run_cli_here(capsys, "analyze", files["couzin"], "-o", tmp_path, *overwrite)
    assert_one_paragraph(proc, "is a folder")


def test_analysis_input_errors_are_exit_2_and_defects_are_not(small_couzin_run, monkeypatch):
    """A wrong option value (the dewi convention on an open-space run) is a UserInputError
    that is also a ValueError for Python callers; a plain ValueError raised inside an
    analysis is a defect and is not dressed up as the user's mistake."""
    from simcore.analysis import analyze_dataset
    from simcore.models import get_engine

    with simcore.open_trajectory(small_couzin_run) as ds:
        with pytest.raises(UserInputError, match="dewi") as info:
            analyze_dataset(ds, convention="dewi")
        assert isinstance(info.value, ValueError)

        def broken(ds, **kwargs):
            raise ValueError("operands could not be broadcast together")

        engine = get_engine("couzin")
        monkeypatch.setattr(type(engine), "load", lambda self, what: broken)
        with pytest.raises(ValueError, match="broadcast") as info:
            analyze_dataset(ds)
        assert not isinstance(info.value, UserInputError)


def test_a_frame_over_the_logs_2_gib_is_refused_with_the_largest_n(tmp_path):
    """NumPy cannot describe a record over 2 GiB, so 10^8 ABP particles (3.7 GiB a frame)
    ended in an internal error ("integer won't fit into a C int"); now exit 2 with the
    largest n, which itself makes a valid record."""
    from simcore.config import resolve
    from simcore.io.framelog import MAX_RECORD_BYTES, record_dtype, record_size
    from simcore.io.trajectory import frame_schema
    from simcore.models import get_engine

    with pytest.raises(UserInputError, match=r"at most 2 GiB, so n <= ([\d,]+)") as info:
        simcore.run("abp", out=tmp_path / "big.nc", steps=1, overrides={"n": 10**8})
    most = int(re.search(r"n <= ([\d,]+)", str(info.value)).group(1).replace(",", ""))
    engine = get_engine("abp")
    params, settings, _ = resolve("abp", overrides={"n": most})
    fields = [tuple(f) for f in frame_schema(most, {}, engine.extra_variables(params),
                                             settings.precision,
                                             velocities=engine.has_velocities)["fields"]]
    assert MAX_RECORD_BYTES - 64 < record_size(fields) <= MAX_RECORD_BYTES
    assert record_dtype(fields).itemsize == record_size(fields)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["analyze", "plot", "export"])
def test_an_output_that_is_the_input_is_refused_even_with_overwrite(files, tmp_path, capsys,
                                                                    command):
    """`analyze in.nc -o in.nc --overwrite` replaced the trajectory with its diagnostics;
    no command replaces its input (here also through a symlink to it)."""
    src = tmp_path / "in.nc"
    shutil.copy(files["couzin"], src)
    (tmp_path / "link.nc").symlink_to(src)
    before = src.read_bytes()
    for out in (src, tmp_path / "link.nc"):
        extra = ["--to", "gsd"] if command == "export" else []
        proc = run_cli_here(capsys, command, src, "-o", out, "--overwrite", *extra)
        assert_one_paragraph(proc, f"The output {out} is the input", "never replaced")
    assert src.read_bytes() == before


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("command", ["run", "analyze"])
def test_an_output_that_is_a_device_or_a_pipe_is_refused(files, tmp_path, capsys, command,
                                                         kind):
    """`-o /dev/null --overwrite` (as root) renamed a regular file over the device node."""
    out = tmp_path / "special"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        import stat

        os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    args = (["run", "couzin", "--steps", "10", "--set", "n=5"] if command == "run"
            else ["analyze", files["couzin"]])
    proc = run_cli_here(capsys, *args, "-o", out, "--overwrite")
    assert_one_paragraph(proc, "is not a regular file")
    assert not out.is_file() and out.exists()


@pytest.mark.parametrize("args", [
    ["run", "couzin", "--steps", "5", "-o", "{long}.nc"],
    ["run", "couzin", "--steps", "5", "-o", "{near}.nc"],  # fits; its .part does not
    ["info", "{long}.nc"],
    ["analyze", "{couzin}", "-o", "{long}.nc"],
    ["plot", "{couzin}", "-o", "{long}.png"],
    ["export", "{couzin}", "--to", "gsd", "-o", "{long}.gsd"],
    ["sweep", "{long}.toml"],
])
def test_a_name_too_long_for_the_file_system_is_exit_2(files, tmp_path, capsys, args):
    """pathlib's exists() raised ENAMETOOLONG as an internal error (exit 1)."""
    names = {"long": str(tmp_path / ("x" * 300)), "near": str(tmp_path / ("y" * 250)),
             "couzin": str(files["couzin"])}
    proc = run_cli_here(capsys, *[a.format(**names) for a in args])
    assert_one_paragraph(proc, "too long for the file system", "at most 255 bytes")
    assert not list(tmp_path.iterdir())


def test_a_sweep_file_in_a_loop_of_symbolic_links_is_exit_2(tmp_path, capsys):
    """Path.resolve() raises RuntimeError for a loop (Python < 3.13): it was exit 1."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert_one_paragraph(run_cli_here(capsys, "sweep", loop / "s.toml"),
                         "loop of symbolic links", str(loop))


def _calls_with_a_path(path, good):
    """Each public function that takes a path, called with ``path`` in that place (``good``:
    a readable trajectory for the other argument)."""
    import matplotlib.figure
    import xarray as xr

    from simcore.io.export import export_trajectory
    from simcore.io.results import write_dataset
    from simcore.plotting import plot_file, save_figure
    from simcore.sweep import analyze_sweep

    return {
        "run": lambda: simcore.run("couzin", steps=5, out=path),
        "open_trajectory": lambda: simcore.open_trajectory(path),
        "sweep": lambda: simcore.sweep(path),
        "open_sweep": lambda: simcore.open_sweep(path),
        "analyze_sweep": lambda: analyze_sweep(path),
        "export to": lambda: export_trajectory(good, path, "extxyz"),
        "export from": lambda: export_trajectory(path, str(good) + ".xyz", "extxyz"),
        "plot_file to": lambda: plot_file(good, str(path) + ".png"),
        "plot_file from": lambda: plot_file(path, str(good) + ".png"),
        "save_figure": lambda: save_figure(matplotlib.figure.Figure(), str(path) + ".png"),
        "write_dataset": lambda: write_dataset(xr.Dataset(), path),
    }


@pytest.mark.parametrize("call", list(_calls_with_a_path("x", "y")))
def test_a_bad_path_is_a_user_input_error_in_python_too(files, tmp_path, call):
    """The CLI's exit 2 for a name too long and a loop of symbolic links: the Python API
    raised the raw OSError (RuntimeError for a loop under Path.resolve)."""
    long_name = tmp_path / ("x" * 300)
    with pytest.raises(UserInputError, match="too long for the file system") as info:
        _calls_with_a_path(long_name, files["couzin"])[call]()
    assert "at most 255 bytes" in str(info.value)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(UserInputError, match="loop of symbolic links|does not exist"):
        _calls_with_a_path(loop / "x.nc", files["couzin"])[call]()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop"]


def test_override_names_must_be_strings(tmp_path):
    with pytest.raises(UserInputError, match="names in overrides must be strings"):
        simcore.run("couzin", out=tmp_path / "x.nc", overrides={1: 5})
