"""Sweeps: identical files on every backend, resume after a kill, failures per run,
``open_sweep`` / ``simcore analyze FOLDER`` with the parameters as dimensions, the SLURM job
script without SLURM, and bad sweep files (exit 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

import simcore
from simcore._errors import UserInputError
from simcore.sweep import (ClusterOptions, SweepFailed, analyze_sweep, derive_seeds, job_script,
                           plan_sweep, read_manifest)

from conftest import assert_one_paragraph, assert_same_file, run_cli, run_cli_here

SMALL = """
model = "couzin"
preset = "dynamic_parallel"
seed = 7
seeds_per_point = 2
steps = 40
write_every = 10
[params]
n = 20
checkpoint_every = 2
[grid]
r_o = [2.0, 5.0]
noise = [0.05, 0.2]
"""


def write_sweep(folder: Path, text: str = SMALL, name: str = "sweep.toml", out: str = "out"):
    path = folder / name
    path.write_text(f'out = "{out}"\n' + text)
    return path


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("run-*.nc") if p.is_file()}


def states(folder: Path) -> list[str]:
    return [e["state"] for e in read_manifest(folder)["runs"]]


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory):
    """The 8-run reference sweep, run serially."""
    base = tmp_path_factory.mktemp("serial")
    return simcore.sweep(write_sweep(base), backend="serial")


def test_plan_seeds_and_file_names(tmp_path, serial_sweep):
    plan = plan_sweep(write_sweep(tmp_path))
    assert len(plan.runs) == 8 and plan.dims == ["r_o", "noise", "replica"]
    seeds = derive_seeds(7, 8)
    assert seeds == [r.seed for r in plan.runs] and len(set(seeds)) == 8
    assert seeds == derive_seeds(7, 8) and seeds != derive_seeds(8, 8)
    # row-major order, replica fastest
    assert [(r.point["r_o"], r.point["noise"], r.coords["replica"]) for r in plan.runs[:3]] == \
        [(2.0, 0.05, 0), (2.0, 0.05, 1), (2.0, 0.2, 0)]
    record = read_manifest(serial_sweep)
    assert states(serial_sweep) == ["done"] * 8
    for run, entry in zip(plan.runs, record["runs"]):
        assert entry["file"] == run.file and entry["seed"] == run.seed
        with netCDF4.Dataset(serial_sweep / run.file) as nc:
            params = json.loads(nc.run_parameters)
        assert params["seed"] == run.seed and params["r_o"] == run.point["r_o"]
        assert params["noise"] == run.point["noise"] and params["n"] == 20
        assert params["checkpoint_every"] == 2 and params["preset"] == "dynamic_parallel"


@pytest.mark.parametrize("backend", ["processes", "dask"])
def test_backends_give_identical_files(tmp_path, serial_sweep, backend):
    t0 = time.perf_counter()
    folder = simcore.sweep(write_sweep(tmp_path), backend=backend, workers=2)
    wall = time.perf_counter() - t0
    assert states(folder) == ["done"] * 8
    names = sorted(mtimes(serial_sweep))
    assert sorted(mtimes(folder)) == names and len(names) == 8
    for name in names:
        assert_same_file(serial_sweep / name, folder / name)
    assert wall < 60


@pytest.mark.parametrize("backend", ["processes", "dask"])
def test_parallel_backends_compile_the_kernels_in_their_workers(tmp_path, backend):
    """A fresh install (an empty Numba cache): every worker compiles the kernels itself,
    after its run has launched Numba's threads. The worker's NUMBA_NUM_THREADS, set after
    Numba was imported, made each of those compilations fail ("Cannot set
    NUMBA_NUM_THREADS to a different value once the threads have been launched"), so
    every run of the README's sweep failed until the cache was warm."""
    path = write_sweep(tmp_path, 'model = "linear"\nsteps = 100\n[grid]\nn = [100, 200]\n')
    proc = run_cli("sweep", path, "--backend", backend, "--workers", "2", "--quiet",
                   env={"NUMBA_CACHE_DIR": str(tmp_path / "empty_cache")})
    assert proc.returncode == 0, proc.stderr
    assert states(tmp_path / "out") == ["done"] * 2


@pytest.mark.parametrize("backend", ["processes", "dask"])
def test_a_script_runs_its_sweep_under_the_main_guard(tmp_path, backend):
    """The parallel backends' workers import the calling script again: under
    `if __name__ == "__main__":` (docs/sweeps.md) the sweep runs; unguarded, each worker
    that re-runs the script is refused with the advice, and the sweep's error names it."""
    write_sweep(tmp_path, 'model = "linear"\nsteps = 100\n[grid]\nn = [100, 200]\n')
    call = f'folder = simcore.sweep("sweep.toml", backend="{backend}", workers=2)\n'
    (tmp_path / "guarded.py").write_text(
        "import simcore\n\nif __name__ == '__main__':\n    " + call)
    (tmp_path / "unguarded.py").write_text("import simcore\n" + call)

    def script(name):
        return subprocess.run([sys.executable, name], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)

    bad = script("unguarded.py")
    text = " ".join(bad.stderr.split())
    assert bad.returncode == 1 and "simcore.sweep() was called again while a worker " \
        "process re-ran the top level of your script" in text
    assert 'must call simcore.sweep under `if __name__ == "__main__":`' in text
    good = script("guarded.py")
    assert good.returncode == 0, good.stderr
    assert states(tmp_path / "out") == ["done"] * 2


def test_a_swapped_or_foreign_run_file_is_never_combined(tmp_path, serial_sweep):
    """Run files swapped by hand, or a manifest edited to name another file, used to be
    combined under the wrong parameters; a file must hold the run its name hashes."""
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(serial_sweep, folder)
    a, b = sorted(folder.glob("run-*.nc"))[:2]
    a.rename(folder / "t"), b.rename(a), (folder / "t").rename(b)
    for combine in (simcore.open_sweep, analyze_sweep):
        with pytest.raises(UserInputError, match=f"{a.name} does not hold the run"):
            combine(folder)
    b.rename(folder / "t"), a.rename(b), (folder / "t").rename(a)  # back: it combines
    assert simcore.open_sweep(folder).sizes["replica"] >= 1
    manifest = json.loads((folder / "manifest.json").read_text())
    shutil.copy(a, tmp_path / "elsewhere.nc")
    manifest["runs"][0]["file"] = "../elsewhere.nc"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserInputError, match="elsewhere.nc does not hold the run"):
        simcore.open_sweep(folder)


def test_open_sweep_has_the_parameters_as_dimensions(serial_sweep):
    ds = simcore.open_sweep(serial_sweep)
    assert ds.coordinates.dims == ("r_o", "noise", "replica", "time", "atom", "spatial")
    assert ds.sizes["r_o"] == 2 and ds.sizes["noise"] == 2 and ds.sizes["replica"] == 2
    assert ds["r_o"].values.tolist() == [2.0, 5.0] and ds["noise"].values.tolist() == [0.05, 0.2]
    assert ds.coordinates.chunks is not None  # lazy (dask)
    sub = ds.sel(r_o=5.0, noise=0.05, replica=1)
    with simcore.open_trajectory(serial_sweep / str(sub.run_file.values)) as one:
        assert one.simcore.params.r_o == 5.0 and one.simcore.params.noise == 0.05
        assert one.simcore.run_settings.seed == int(sub.seed)
        np.testing.assert_array_equal(one.coordinates.values, sub.coordinates.values)
        np.testing.assert_array_equal(one.time.values, ds.time.values)
    assert ds.attrs["simcore_sweep_dims"] == "r_o noise replica"
    ds.close()


def test_analyze_sweep_folder_writes_combined_diagnostics(tmp_path, serial_sweep):
    out = tmp_path / "diag.nc"
    proc = run_cli("analyze", serial_sweep, "-o", out, check_rc=0)
    assert "r_o (2), noise (2), replica (2)" in proc.stdout
    with xr.open_dataset(out) as diag:
        assert diag["polarization"].dims == ("r_o", "noise", "replica", "time")
        assert diag["osi"].sizes["time"] == 5
        assert np.all((diag["polarization"] >= 0) & (diag["polarization"] <= 1))
    assert_one_paragraph(run_cli("analyze", serial_sweep, "-o", out), "already exists")


def test_zip_points_and_ragged_runs(tmp_path):
    zipped = """
model = "couzin"
preset = "swarm"
steps = 20
[zip]
n = [5, 8]
write_every = [10, 5]
"""
    folder = simcore.sweep(write_sweep(tmp_path, zipped, "z.toml", "z"))
    ds = simcore.open_sweep(folder)
    # n is the zip's dimension, write_every a coordinate on it; frame times differ, so the
    # frame dimension stays `frame` with a per-run time coordinate; atoms are NaN-padded
    assert ds.coordinates.dims == ("n", "replica", "frame", "atom", "spatial")
    assert ds["write_every"].dims == ("n",) and ds["write_every"].values.tolist() == [10, 5]
    assert ds["time"].dims == ("n", "replica", "frame")
    assert ds.sizes["frame"] == 5 and ds.sizes["atom"] == 8
    small = ds.coordinates.sel(n=5, replica=0).values
    assert np.isnan(small[:, 5:]).all() and np.isnan(small[3:]).all()
    assert not np.isnan(small[:3, :5]).any()
    ds.close()
    points = """
model = "couzin"
steps = 10
write_every = 10
n = 6
[[points]]
preset = "swarm"
noise = 0.1
[[points]]
preset = "torus"
noise = 0.2
"""
    folder = simcore.sweep(write_sweep(tmp_path, points.replace("n = 6\n", "[params]\nn = 6\n"),
                                       "p.toml", "p"))
    ds = simcore.open_sweep(folder)
    assert ds["preset"].dims == ("point",) and ds["preset"].values.tolist() == ["swarm", "torus"]
    assert ds.velocities.dims[:2] == ("point", "replica")
    ds.close()


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    path = write_sweep(tmp_path)
    proc = run_cli("sweep", path, env={"SIMCORE_INTERRUPT_AFTER_FRAMES": "3"})
    assert proc.returncode == 130, proc.stderr
    folder = tmp_path / "out"
    plan = plan_sweep(path)
    first = folder / plan.runs[0].file
    assert (folder / (first.name + ".part")).exists() and (folder / (first.name + ".ckpt")).exists()
    record = read_manifest(folder)
    assert [e["state"] for e in record["runs"]] == ["pending"] * 8
    assert "interrupted" in record["runs"][0]["error"]
    proc = run_cli("sweep", path, check_rc=0)
    assert "8 done, 0 failed" in proc.stderr
    assert states(folder) == ["done"] * 8
    with netCDF4.Dataset(first) as nc:
        assert "resumed" in json.loads(nc.provenance)
    reference = tmp_path / "reference.nc"
    model, params, settings, preset = simcore.config.split_run_parameters(
        plan.runs[0].run_parameters)
    simcore.driver.run_model(model, params, settings, reference, preset=preset, quiet=True)
    assert_same_file(first, reference)


def test_killed_sweep_reruns_only_what_is_missing(tmp_path):
    text = SMALL.replace("steps = 40", "steps = 5000").replace("n = 20", "n = 100") \
        .replace("write_every = 10", "write_every = 100")
    path = write_sweep(tmp_path, text)
    folder = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "simcore.cli", "sweep", str(path), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            try:
                if states(folder).count("done") >= 2:
                    break
            except (UserInputError, KeyError):
                pass
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = states(folder)
    assert 2 <= before.count("done") < 8, before  # killed midway
    done = {e["file"] for e in read_manifest(folder)["runs"] if e["state"] == "done"}
    kept = {k: v for k, v in mtimes(folder).items() if k in done}
    assert set(kept) == done
    run_cli("sweep", path, "--quiet", check_rc=0)
    assert states(folder) == ["done"] * 8
    after = mtimes(folder)
    assert all(after[k] == v for k, v in kept.items())  # finished runs were not redone
    assert len(after) == 8 and not list(folder.glob("*.part")) and not list(folder.glob("*.ckpt"))


def test_ctrl_c_stops_a_process_pool_sweep_promptly_and_it_resumes(tmp_path):
    text = SMALL.replace("steps = 40", "steps = 10000").replace("n = 20", "n = 100") \
        .replace("write_every = 10", "write_every = 100").replace("seeds_per_point = 2", "")
    path = write_sweep(tmp_path, text)
    folder = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "simcore.cli", "sweep", str(path),
                             "--backend", "processes", "--workers", "2"],
                            start_new_session=True, stderr=subprocess.PIPE, text=True,
                            # a shell's background job ('cmd &' without job control) starts with
                            # SIGINT ignored, and Python would keep ignoring it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(list(folder.glob("*.ckpt"))) < 2:
        time.sleep(0.05)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    t0 = time.time()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert time.time() - t0 < 20  # queued runs were not started after Ctrl-C
    started = {p.name.split(".")[0] for p in folder.glob("run-*")}
    assert 2 <= len(started) < 4 and len(list(folder.glob("*.part"))) >= 1
    run_cli("sweep", path, "--backend", "processes", "--workers", "2", check_rc=0)
    assert states(folder) == ["done"] * 4
    resumed = 0
    for f in folder.glob("run-*.nc"):
        with netCDF4.Dataset(f) as nc:
            resumed += "resumed" in json.loads(nc.provenance)
    assert resumed >= 1


def test_failed_run_is_reported_without_stopping_the_others(tmp_path):
    path = write_sweep(tmp_path)
    plan = plan_sweep(path)
    folder = tmp_path / "out"
    folder.mkdir()
    blocker = folder / plan.runs[5].file
    blocker.mkdir()  # the run's output path is a folder: that run fails
    with pytest.raises(SweepFailed) as info:
        simcore.sweep(path, backend="processes", workers=2)
    assert list(info.value.failures) == [plan.runs[5].file]
    record = read_manifest(folder)
    assert [e["state"] for e in record["runs"]] == ["done"] * 5 + ["failed"] + ["done"] * 2
    assert "is a folder" in record["runs"][5]["error"]
    proc = run_cli("sweep", path)
    assert proc.returncode == 1 and "1 run(s) of the sweep" in proc.stderr.replace("\n", " ")
    before = mtimes(folder)
    blocker.rmdir()
    run_cli("sweep", path, check_rc=0)
    assert states(folder) == ["done"] * 8
    after = mtimes(folder)
    assert set(after) - set(before) == {plan.runs[5].file}
    assert all(after[k] == v for k, v in before.items())


def test_slurm_and_pbs_job_scripts_without_slurm(tmp_path):
    path = write_sweep(tmp_path)
    proc = run_cli("sweep", path, "--backend", "dask", "--scheduler", "slurm", "--cores", "4",
                   "--memory", "8GB", "--walltime", "02:00:00", "--queue", "short",
                   "--account", "proj42", "--print-job-script", check_rc=0)
    script = proc.stdout
    assert script.startswith("#!/usr/bin/env bash")
    for line in ("#SBATCH -J simcore-sweep", "#SBATCH -p short", "#SBATCH -A proj42",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G", "#SBATCH -t 02:00:00",
                 "export NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1"):
        assert line in script.splitlines(), (line, script)
    worker = script.strip().splitlines()[-1]
    assert worker.startswith(sys.executable) and "distributed.cli.dask_worker" in worker
    assert "--nworkers 4" in worker and "--nthreads 1" in worker
    pbs = job_script("pbs", ClusterOptions(cores=2, memory="4GB", queue="workq"))
    assert "#PBS -q workq" in pbs and "ncpus=2" in pbs and "--nworkers 2" in pbs
    proc = run_cli("sweep", path, "--backend", "dask", "--scheduler", "slurm", "--cores", "2",
                   "--memory", "4GB", "--dry-run", check_rc=0)
    assert "#SBATCH --cpus-per-task=2" in proc.stdout and "8 runs" in proc.stdout
    assert proc.stdout.count("pending") == 8 and not (tmp_path / "out").exists()
    with pytest.raises(UserInputError, match="--cores and --memory"):
        job_script("slurm", ClusterOptions(walltime="01:00:00"))


def test_missing_cluster_extra_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(UserInputError, match=r"pip install 'simcore\[cluster\]'"):
        simcore.sweep(write_sweep(tmp_path), backend="dask")
    assert not (tmp_path / "out").exists()


BAD = [
    ("", 'model = "fish"\n[grid]\nn = [1, 2]\n', ["model must be one of", "couzin"]),
    ("", 'model = "couzin"\nstepz = 3\n[grid]\nn = [1, 2]\n', ["unknown key(s) stepz"]),
    ("", 'model = "couzin"\n[params]\nn = 5\n', ["nothing is varied"]),
    ("", 'model = "couzin"\n[zip]\nn = [1, 2]\nnoise = [0.1]\n', ["equal lengths", "n: 2"]),
    ("", 'model = "couzin"\n[grid]\nr_o = [0.5, 2.0]\n', ["r_o=0.5", "r_r <= r_o <= r_a"]),
    ("", 'model = "couzin"\n[grid]\nspeeed = [1.0, 2.0]\n', ["speeed: unknown parameter"]),
    ("", 'model = "couzin"\n[params]\nseed = 3\n[grid]\nn = [1, 2]\n', ["root seed"]),
    ("", 'model = "couzin"\n[params]\nn = 3\n[grid]\nn = [1, 2]\n', ["both varied and fixed"]),
    ("", 'model = "couzin"\n[grid]\nn = [2, 2]\n', ["repeats a value"]),
    ("", 'model = "couzin"\nseeds_per_point = 0\n[grid]\nn = [1, 2]\n', ["seeds_per_point"]),
    ("", 'model = "couzin"\n[grid]\nn = 3\n', ["grid.n must be a non-empty list"]),
    ("", 'model = "couzin"\n[grid]\nn = [1, 2\n', ["is not valid TOML"]),
    ("", 'model = "couzin"\nconfig = "nope.toml"\n[grid]\nn = [1, 2]\n', ["does not exist"]),
    ("", 'model = "couzin"\npreset = "mill"\n[grid]\nn = [1, 2]\n', ["Unknown preset 'mill'"]),
    (dict(backend="serial", scheduler="local"), SMALL, ["--scheduler only applies"]),
    (dict(backend="dask", scheduler="nowhere"), SMALL, ["tcp://HOST:8786"]),
    (dict(workers=0), SMALL, ["--workers must be at least 1"]),
]


@pytest.mark.parametrize("kwargs,text,fragments", BAD)
def test_bad_sweeps_raise_one_clear_paragraph(tmp_path, kwargs, text, fragments):
    path = tmp_path / "bad.toml"
    path.write_text('out = "out"\n' + text)
    with pytest.raises(UserInputError) as info:
        simcore.sweep(path, **(kwargs or {}))
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "out").exists()


def test_bad_sweeps_exit_2_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('out = "out"\nmodel = "couzin"\n[zip]\nn = [1, 2]\nnoise = [0.1]\n')
    assert_one_paragraph(run_cli_here(capsys, "sweep", path), "equal lengths")
    path.write_text('out = "out"\n' + SMALL)
    assert_one_paragraph(run_cli_here(capsys, "sweep", path, "--scheduler", "local"),
                         "--scheduler only applies")
    assert not (tmp_path / "out").exists()


def test_missing_file_and_other_sweep_in_folder_exit_2(tmp_path, serial_sweep, capsys):
    with pytest.raises(UserInputError, match="does not exist"):
        simcore.sweep(tmp_path / "none.toml")
    other = write_sweep(tmp_path, SMALL.replace("seed = 7", "seed = 8"))
    with pytest.raises(UserInputError, match="holds another sweep"):
        simcore.sweep(other, out=serial_sweep)
    assert_one_paragraph(run_cli_here(capsys, "analyze", tmp_path), "not a sweep folder")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text("{}")
    with pytest.raises(UserInputError, match="not a simcore sweep manifest"):
        simcore.open_sweep(tmp_path / "out")


def test_open_sweep_refuses_an_unfinished_sweep(tmp_path):
    path = write_sweep(tmp_path)
    proc = run_cli("sweep", path, env={"SIMCORE_INTERRUPT_AFTER_FRAMES": "2"})
    assert proc.returncode == 130
    with pytest.raises(UserInputError, match="8 of the 8 runs .* are not finished"):
        simcore.open_sweep(tmp_path / "out")


@pytest.mark.parametrize("threads_per_worker", [None, 1])
def test_a_serial_sweep_s_runs_choose_and_follow_their_thread_count(tmp_path, monkeypatch,
                                                                   threads_per_worker):
    """The serial backend gives each run the default thread count (threads=None: the cores
    other processes leave idle at its start, followed while it runs) unless
    --threads-per-worker fixes it; it used to probe once for the whole sweep."""
    import simcore.driver as driver

    seen = []
    real = driver.run_model

    def recording(*args, **options):
        seen.append(options.get("threads"))
        return real(*args, **options)

    monkeypatch.setattr(driver, "run_model", recording)
    simcore.sweep(write_sweep(tmp_path, SMALL.replace("seeds_per_point = 2",
                                                     "seeds_per_point = 1")),
                  backend="serial", threads_per_worker=threads_per_worker)
    assert seen == [threads_per_worker] * 4


def test_a_refused_or_unknown_dask_scheduler_is_said_at_once(tmp_path):
    """dask's client retries a refused address until its 20 s timeout; simcore says so
    at once, and leaves an address that accepts connections to dask."""
    import socket

    from simcore.sweep.cluster import _refuse_unreachable

    with socket.socket() as listening:  # a port that answers (no dask behind it)
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        _refuse_unreachable(f"tcp://127.0.0.1:{port}")
    # the same port closed: refused (the kernel does not reuse it this soon)
    path = tmp_path / "s.toml"
    path.write_text('out = "out"\n' + SMALL)
    started = time.monotonic()
    with pytest.raises(UserInputError, match=f"port {port} of 127.0.0.1 \\(connection refused"):
        simcore.sweep(path, backend="dask", scheduler=f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    with pytest.raises(UserInputError, match="unknown host 'no-such-host.invalid'"):
        _refuse_unreachable("tcp://no-such-host.invalid:8786")


def test_the_local_dask_cluster_leaves_port_8787_alone(tmp_path):
    """dashboard_address=None still started the scheduler's HTTP server on 8787, warning
    "Port 8787 is already in use" when another cluster held it: it takes a free port."""
    import socket
    import warnings

    from simcore.sweep.cluster import _start_dask

    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    except OSError:
        pass  # another process holds it already: the same situation
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client, cluster = _start_dask(None, 1, 1, None, tmp_path, log=lambda _: None)
            try:
                http = cluster.scheduler.http_server
                assert (http.address, http.port != 8787) == ("127.0.0.1", True)
            finally:
                client.close()
                cluster.close()
    finally:
        holder.close()
    assert not [w for w in caught if "already in use" in str(w.message)]


def test_sweep_on_an_external_dask_scheduler_by_address(tmp_path, serial_sweep):
    """--scheduler tcp://HOST:PORT (a cluster's scheduler, here a local one on TCP): the
    address passes the reachability check and the files equal the serial backend's."""
    import logging

    from distributed import LocalCluster

    from simcore.sweep.cluster import LOCAL_SCHEDULER_OPTIONS

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp",
                      dashboard_address=None, silence_logs=logging.ERROR,
                      scheduler_kwargs=dict(LOCAL_SCHEDULER_OPTIONS)) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        folder = simcore.sweep(write_sweep(tmp_path), backend="dask",
                               scheduler=cluster.scheduler_address)
    assert states(folder) == ["done"] * 8
    for name in sorted(mtimes(serial_sweep)):
        assert_same_file(serial_sweep / name, folder / name)


def test_the_failure_report_joins_the_errors_into_sentences(tmp_path):
    """Each run's error loses its full stop inside the list, and a sweep none of whose
    runs finished does not claim that the others did."""
    failures = {"run-a.nc": "Traceback ...\nWriting a failed. Free some space.",
                "run-b.nc": "The disk is full."}
    every = str(SweepFailed(tmp_path, failures, n_runs=2))
    assert "run-a.nc: Writing a failed. Free some space; run-b.nc: The disk is full. " \
           "None of its runs finished." in every and ".." not in every
    some = str(SweepFailed(tmp_path, failures, n_runs=5))
    assert "The disk is full. The other runs finished." in some


def test_a_sweep_of_too_many_runs_is_refused_before_it_is_listed(tmp_path):
    """seeds_per_point = 10^8 used all the memory listing the runs (even with --dry-run)."""
    path = write_sweep(tmp_path, 'model = "linear"\nsteps = 100\nseeds_per_point = 100000000\n'
                                 '[grid]\nn = [100, 200]\n')
    with pytest.raises(UserInputError, match=r"has 200,000,000 runs \(2 points x 100,000,000 "
                                             r"seeds_per_point\); a sweep holds at most"):
        plan_sweep(path)
    from simcore.sweep.plan import MAX_RUNS

    just = write_sweep(tmp_path, f'model = "linear"\nsteps = 100\nseeds_per_point = '
                                 f'{MAX_RUNS // 2 + 1}\n[grid]\nn = [100, 200]\n', name="j.toml")
    with pytest.raises(UserInputError, match="a sweep holds at most"):
        plan_sweep(just)


def test_the_api_refuses_what_is_not_a_sweep_and_an_empty_out(tmp_path):
    """simcore.sweep(None) / (5) and open_sweep(None) raised TypeErrors; out = "" wrote the
    runs and the manifest into the sweep file's own folder."""
    for bad in (None, 5):
        with pytest.raises(UserInputError, match="path of its TOML file or a dict"):
            simcore.sweep(bad)
    for combine in (simcore.open_sweep, analyze_sweep):
        with pytest.raises(UserInputError, match="A sweep folder must be a path"):
            combine(None)
    path = tmp_path / "e.toml"
    path.write_text('out = ""\nmodel = "linear"\nsteps = 100\n[grid]\nn = [100, 200]\n')
    with pytest.raises(UserInputError, match="out is empty"):
        plan_sweep(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.toml"]
