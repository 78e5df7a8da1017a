"""The crash-safe store's refusals: one writer per output and per sweep folder, stale
locks, damaged partial files and checkpoints, a full disk while assembling the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib

import netCDF4
import numpy as np
import pytest

import simcore
from simcore.config import resolve
from simcore._errors import UserInputError
from simcore.driver import run_model
from simcore.io.outputs import partial_paths
from simcore.io.checkpoint import read_checkpoint_meta
from simcore.io.framelog import FrameLogReader

from conftest import (assert_one_paragraph, assert_same_file, join_freeing_threads,
                      open_descriptors, run_cli, run_cli_here)

KW = dict(preset="swarm", steps=200, seed=4, write_every=5,
          overrides={"n": 50, "checkpoint_every": 4})


def _interrupted(out, frames=13):
    params, settings, preset = resolve("couzin", **KW)
    with pytest.raises(KeyboardInterrupt):
        run_model("couzin", params, settings, out, preset=preset, quiet=True,
                  stop_after_frames=frames)
    return partial_paths(out)


def _cli_args(out, *extra):
    return ["run", "couzin", "--preset", "swarm", "--steps", "200", "--seed", "4",
            "--write-every", "5", "--set", "n=50", "--set", "checkpoint_every=4", "--quiet",
            "-o", out, *extra]


def test_second_writer_is_refused_with_the_owners_pid(tmp_path):
    # the linear model: its kernel compiles in ~2 s, and a stop request waits for a
    # compilation in progress (Couzin's: ~35 s on a fresh clone) before the run can stop
    out = tmp_path / "busy.nc"
    busy = ["run", "linear", "--set", "n=200", "--steps", "10000000", "--write-every",
            "10000", "--quiet", "-o", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "simcore.cli", *busy],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        part = out.with_name("busy.nc.part")
        t0 = time.monotonic()
        while not part.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        before = part.stat().st_ino
        for extra in ([], ["--overwrite"], ["--resume"]):
            proc = run_cli(*busy, *extra)
            assert_one_paragraph(proc, "being written by another process", f"PID {first.pid}")
        assert part.exists() and part.stat().st_ino == before  # untouched
        assert first.poll() is None
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert first.returncode == 143


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "s.nc"
    lock = out.with_name("s.nc.lock")
    lock.write_text(json.dumps({"pid": 999999, "host": "gone", "utc_start": "then"}))
    proc = run_cli(*_cli_args(out), check_rc=0)
    assert "stale lock" in proc.stderr and "PID 999999 on host gone" in proc.stderr
    assert out.exists() and not lock.exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
def test_replace_and_unlink_free_the_old_file_and_leak_no_descriptor(tmp_path):
    """The old file's blocks are freed by a thread; the names change at once, and every
    descriptor held for it is closed once the thread ran."""
    from simcore.io.atomic import replace, unlink

    target, tmp = tmp_path / "out.nc", tmp_path / "out.part.nc"
    join_freeing_threads()  # earlier tests' closes: the set must stand still meanwhile
    before = open_descriptors()
    for content in (b"first", b"second"):  # into a missing name, then over an existing file
        tmp.write_bytes(content)
        replace(tmp, target)
        assert target.read_bytes() == content and not tmp.exists()
    (tmp_path / "folder").mkdir()
    tmp.write_bytes(b"x")
    with pytest.raises(OSError):  # a folder is not replaced by a file (os.replace's error)
        replace(tmp, tmp_path / "folder")
    unlink(target)
    unlink(target)  # missing: no error
    assert not target.exists()
    join_freeing_threads()
    assert open_descriptors() == before


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
def test_a_released_lock_can_be_taken_again_at_once(tmp_path):
    """release() leaves the closing of the old lock file to a thread: the next writer of
    the same output (this process, before that thread ran) gets a new file and the lock."""
    from simcore.io.lock import OutputLock

    path = tmp_path / "o.nc.lock"
    join_freeing_threads()
    before = open_descriptors()
    for _ in range(20):
        with OutputLock(path, "o.nc", log=pytest.fail):
            assert json.loads(path.read_text())["pid"] == os.getpid()
        assert not path.exists()
    join_freeing_threads()
    assert open_descriptors() == before


def test_two_sweeps_on_one_folder(tmp_path):
    sweep = tmp_path / "sw.toml"
    sweep.write_text(f'model = "couzin"\npreset = "swarm"\nout = "{tmp_path / "runs"}"\n'
                     'steps = 200000\n[grid]\nn = [200, 201]\n')
    first = subprocess.Popen([sys.executable, "-m", "simcore.cli", "sweep", str(sweep),
                              "--backend", "processes", "--workers", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "runs"
    try:
        t0 = time.monotonic()
        while len(list(runs.glob("*.nc.ckpt"))) < 2 and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        proc = run_cli("sweep", sweep)
        assert_one_paragraph(proc, "sweep folder", "being written by another process",
                             f"PID {first.pid}")
        time.sleep(1.0)
    finally:
        first.terminate()  # SIGTERM to the sweep alone, as `--signal=B:TERM` sends it
        _, err = first.communicate(timeout=120)
    # the sweep passed it on: both runs checkpointed past frame 0 and stopped
    assert first.returncode == 143, err
    ckpts = sorted(runs.glob("*.nc.ckpt"))
    assert len(ckpts) == 2 and all(
        read_checkpoint_meta(c)["frames_written"] > 1 for c in ckpts), err


def test_damaged_checkpointed_frame_is_refused_with_what_was_lost(tmp_path, capsys):
    out = tmp_path / "d.nc"
    part, ckpt = _interrupted(out)
    reader = FrameLogReader(part)
    offset = reader.header_size + 7 * reader.dtype.itemsize + 100
    with open(part, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x10]))
    proc = run_cli_here(capsys, *_cli_args(out, "--resume"))
    assert_one_paragraph(proc, "damaged", "frame 7 of the 13 frames", "frames 0..6 are intact",
                         "--overwrite")
    run_cli(*_cli_args(out, "--overwrite"), check_rc=0)


def test_resume_with_overwrite_is_refused_and_keeps_the_checkpoint(tmp_path):
    """Both flags: --overwrite would win and discard the interrupted run's frames."""
    out = tmp_path / "both.nc"
    part, ckpt = _interrupted(out)
    before = part.read_bytes(), ckpt.read_bytes()
    params, settings, preset = resolve("couzin", **KW)
    with pytest.raises(UserInputError, match="pass one of them"):
        run_model("couzin", params, settings, out, preset=preset, quiet=True, resume=True,
                  overwrite=True)
    assert (part.read_bytes(), ckpt.read_bytes()) == before and not out.exists()
    run_model("couzin", params, settings, out, preset=preset, quiet=True, resume=True)
    assert out.exists()


def test_torn_tail_after_the_checkpoint_is_cut_and_resumed(tmp_path):
    """Garbage after the checkpointed frames (a kill mid-write) is not an error."""
    out = tmp_path / "t.nc"
    part, _ = _interrupted(out)
    with open(part, "ab") as fh:
        fh.write(b"\x07" * 5000)
    run_cli(*_cli_args(out, "--resume"), check_rc=0)
    ref = simcore.run("couzin", out=tmp_path / "ref.nc", **KW)
    assert_same_file(ref, out)


@pytest.mark.parametrize("damage", ["garbage", "empty", "shapes", "torn_header"])
def test_damaged_checkpoint_or_header_is_exit_2(tmp_path, capsys, damage):
    out = tmp_path / "c.nc"
    part, ckpt = _interrupted(out)
    if damage == "garbage":
        ckpt.write_bytes(b"PK\x03\x04 not a zip" * 10)
        needles = ["checkpoint", "unreadable", "--overwrite"]
    elif damage == "empty":
        ckpt.write_bytes(b"")
        needles = ["checkpoint", "unreadable"]
    elif damage == "shapes":
        with np.load(ckpt) as data:
            arrays = {k: data[k] for k in data.files}
        key = next(k for k in arrays if k.startswith("state__positions"))
        arrays[key] = arrays[key][:-3]
        with open(ckpt, "wb") as fh:
            np.savez(fh, **arrays)
        needles = ["does not fit the run's parameters", "positions", "expected"]
    else:
        part.write_bytes(part.read_bytes()[:20])
        needles = ["damaged", "header"]
    assert_one_paragraph(run_cli_here(capsys, *_cli_args(out, "--resume")), *needles)


@pytest.mark.parametrize("made_by", ["netCDF-C", "template"])
def test_full_disk_while_assembling_keeps_every_frame(tmp_path, monkeypatch, made_by):
    """ENOSPC during the final assembly: exit-2 error that says all frames are safe, no
    final file, and --resume finishes it to the right bits. The file is created either
    by netCDF-C (a layout's first file in a process) or as a copy of the layout's
    template (simcore.io.ncfile): the disk fills up in either."""
    import builtins

    import netCDF4

    import simcore.io.trajectory as trajectory
    from simcore.io import ncfile

    out = tmp_path / "a.nc"
    real, real_open = netCDF4.Dataset, builtins.open

    class FullDisk:
        def __init__(self, path, mode="r", **kw):
            if mode == "w":
                raise OSError(28, "No space left on device")
            self._ds = real(path, mode, **kw)

        def __getattr__(self, name):
            return getattr(self._ds, name)

    def full_disk_open(path, mode="r", *args, **kw):
        if "w" in mode:
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kw)

    if made_by == "netCDF-C":
        ncfile.forget_templates()
        monkeypatch.setattr(trajectory.netCDF4, "Dataset", FullDisk)
    else:
        simcore.run("couzin", out=tmp_path / "first.nc", **KW)  # makes the template
        monkeypatch.setattr(ncfile, "open", full_disk_open, raising=False)
    with pytest.raises(simcore.UserInputError) as err:
        simcore.run("couzin", out=out, **KW)
    text = str(err.value)
    assert "disk is full" in text and "All 41 frames are safe" in text and "--resume" in text
    assert not out.exists() and not out.with_name("a.nc.tmp").exists()
    monkeypatch.undo()
    simcore.run("couzin", out=out, resume=True, **KW)
    assert_same_file(simcore.run("couzin", out=tmp_path / "ref.nc", **KW), out)


def test_hdf_error_without_a_full_disk_is_not_called_a_full_disk(tmp_path):
    from simcore.io.write_errors import is_space_error

    assert not is_space_error(RuntimeError("NetCDF: HDF error"), tmp_path / "x.nc")
    assert is_space_error(OSError(28, "No space left on device"))
    assert not is_space_error(OSError(5, "Input/output error"))


@pytest.mark.parametrize("where", ["/proc/x.nc", "/sys/x.nc", "missing/x.nc"])
def test_output_that_cannot_be_created(tmp_path, where):
    out = where if where.startswith("/") else tmp_path / where
    proc = run_cli("run", "couzin", "--preset", "swarm", "--steps", "10", "--quiet", "-o", out)
    assert_one_paragraph(proc, str(out).rsplit("/", 1)[0])


@pytest.mark.parametrize("bad", [None, 3, ""])
def test_api_run_needs_an_output_path(bad):
    with pytest.raises(simcore.UserInputError, match="out must be"):
        simcore.run("couzin", preset="swarm", steps=10, out=bad)


@pytest.mark.parametrize("limit", [100, 6000])
def test_full_disk_before_the_first_checkpoint(tmp_path, limit):
    """No space for the lock file (100 bytes) or for the frame log's first block: exit 2,
    called a full disk, and no claim that a checkpoint was kept."""
    import resource

    out = tmp_path / "f.nc"

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "simcore.cli", *_cli_args(out)],
                          preexec_fn=small_files, capture_output=True, text=True, timeout=300)
    text = assert_one_paragraph(proc, "disk is full or a file-size limit was reached")
    assert "last checkpoint are kept" not in text
    assert not out.with_name("f.nc.lock").exists()
    run_cli(*_cli_args(out, "--overwrite"), check_rc=0)


def test_unstable_run_keeps_its_good_frames_and_no_partial_files(tmp_path):
    """A blow-up part-way: exit 2 with the engine's advice, the good frames in
    OUT.unstable.nc (finite, in order), no .part/.ckpt/.lock, and the corrected command
    runs without --overwrite or --resume."""
    out = tmp_path / "u.nc"
    # dt = 0.004 is stable for a while in a dilute lattice start, then particles meet
    args = ["run", "abp", "--set", "n=400", "--set", "dt=0.004", "--steps", "4000",
            "--write-every", "20", "--quiet", "-o", out]
    proc = run_cli(*args)
    text = assert_one_paragraph(proc, "unstable", "dt <=", "u.unstable.nc", "starts afresh")
    kept = tmp_path / "u.unstable.nc"
    assert kept.exists()
    assert not any(out.with_name(out.name + s).exists() for s in (".part", ".ckpt", ".lock"))
    with simcore.open_trajectory(kept) as ds:
        n = ds.sizes["time"]
        assert f"The {n} frames before it" in text or (n == 1 and "initial frame" in text)
        assert np.isfinite(ds["coordinates"].values).all()
        assert np.all(np.diff(ds["time"].values) > 0)
        assert "unstable" in ds.attrs["simcore_incomplete"]
    run_cli(*[a if a != "dt=0.004" else "dt=0.0001" for a in args], check_rc=0)


def test_reading_the_part_of_a_running_run(tmp_path):
    """While a run writes, open_trajectory and `simcore info` read its .part (no lock, no
    HDF5 refusal); the frames shown are the checkpointed ones, equal to the frames of a
    shorter run with the same seed (a trajectory does not depend on its total length)."""
    out = tmp_path / "live.nc"
    cmd = [sys.executable, "-m", "simcore.cli", "run", "couzin", "--preset", "swarm",
           "--set", "n=100", "--steps", "2000000", "--write-every", "10", "--seed", "9",
           "--set", "checkpoint_seconds=0.3", "--threads", "1", "--quiet", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = out.with_name("live.nc.part")
    try:
        t0 = time.monotonic()
        seen = []
        while len(seen) < 2 and time.monotonic() - t0 < 120:
            meta = read_checkpoint_meta(out.with_name("live.nc.ckpt"))
            if meta is not None and (not seen or meta["frames_written"] > seen[-1]):
                with simcore.open_trajectory(part) as ds:
                    seen.append(ds.sizes["time"])
                    frames = ds["coordinates"].values
            time.sleep(0.2)
        info = run_cli("info", part, check_rc=0)
        assert proc.poll() is None  # still running: all of the above read a live file
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert len(seen) == 2 and seen[1] > seen[0] >= 1
    assert "partial file of a running or interrupted run" in info.stdout
    k = seen[1]
    ref = simcore.run("couzin", preset="swarm", steps=10 * (k - 1), write_every=10, seed=9,
                      overrides={"n": 100}, out=tmp_path / "ref.nc")
    with simcore.open_trajectory(ref) as r:
        np.testing.assert_array_equal(frames, r["coordinates"].values[:k])


def test_run_on_a_read_only_file_system(read_only_fs):
    out = read_only_fs / "r.nc"
    proc = run_cli("run", "couzin", "--preset", "swarm", "--steps", "10", "--quiet", "-o", out)
    text = assert_one_paragraph(proc, str(read_only_fs))
    assert "read-only" in text.lower() or "writable" in text
    assert "full" not in text


def test_run_on_a_really_full_disk_then_resume(tiny_fs):
    """ENOSPC from a real (tmpfs) file system during the run (the up-front space check
    skipped, as for a file system that misreports its free space): exit 2 called a full
    disk; after space is freed the advised command finishes the run."""
    out = tiny_fs / "f.nc"
    args = ["run", "couzin", "--preset", "swarm", "--set", "n=20", "--steps", "100",
            "--format", "amber", "--quiet", "-o", out]  # log + file fit in 64 KiB
    skip = {"SIMCORE_SKIP_DISK_CHECK": "1"}
    text = assert_one_paragraph(run_cli(*args, env=skip),
                                "disk is full or a file-size limit was reached")
    (tiny_fs / "fill").unlink()
    advised = "--resume" if "--resume" in text else "--overwrite"
    run_cli(*args, advised, check_rc=0, env=skip)
    assert out.exists() and not out.with_name("f.nc.lock").exists()


def test_a_run_whose_frames_cannot_fit_is_refused_before_it_starts(tiny_fs):
    """The frame log alone needs more than the 4 KiB left: exit 2 at once, naming the
    sizes, with nothing written; once space is freed the same command runs."""
    out = tiny_fs / "f.nc"
    args = ["run", "couzin", "--preset", "swarm", "--set", "n=20", "--steps", "100",
            "--format", "amber", "--quiet", "-o", out]
    assert_one_paragraph(run_cli(*args), "for its frame log f.nc.part", "has only",
                         "Nothing was written", "SIMCORE_SKIP_DISK_CHECK=1")
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["fill"]
    (tiny_fs / "fill").unlink()
    run_cli(*args, check_rc=0)
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["f.nc"]


def test_the_space_check_counts_the_log_and_the_file(tmp_path, monkeypatch):
    """With the free space reported as B: a fresh run whose frame log (and checkpoint)
    needs more than B is refused, one whose log fits but not log and file together is warned about and runs,
    and a resumed run needs only the frames its log still lacks (the log's size on disk
    says how many it holds)."""
    import warnings

    import simcore.io.outputs as outputs
    from simcore.driver import _frames_bytes, _log_bytes
    from simcore.models import get_engine

    params, settings, preset = resolve("couzin", **KW)
    frames = _frames_bytes(get_engine("couzin"), params, settings)
    log = _log_bytes(frames, settings)
    assert log > frames
    free = {"bytes": log - 1}
    monkeypatch.setattr(outputs, "free_bytes", lambda path: free["bytes"])

    def run(out, **kw):
        return run_model("couzin", params, settings, out, preset=preset, quiet=True, **kw)

    with pytest.raises(UserInputError, match="has only"):
        run(tmp_path / "a.nc")
    assert list(tmp_path.iterdir()) == []
    free["bytes"] = log  # the log fits, the file beside it perhaps not
    with pytest.warns(UserWarning, match="perhaps not for b.nc"):
        run(tmp_path / "b.nc")
    free["bytes"] = log + frames  # both fit: silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(tmp_path / "c.nc")
    part, _ = _interrupted(tmp_path / "d.nc")
    lacking = log - part.stat().st_size
    assert 0 < lacking < log
    free["bytes"] = lacking - 1
    with pytest.raises(UserInputError, match="has only"):
        run(tmp_path / "d.nc", resume=True)
    free["bytes"] = lacking  # what the log lacks, less than the whole log
    with pytest.warns(UserWarning, match="perhaps not for d.nc"):
        run(tmp_path / "d.nc", resume=True)
    assert_same_file(tmp_path / "d.nc", tmp_path / "c.nc")


def test_a_run_the_space_check_lets_start_keeps_every_frame(small_fs):
    """On a real file system with just the free space the check asks for the frame log:
    the run starts (with the warning that its file may not fit), logs every frame, and
    fails only when it assembles the file (uncompressed AMBER: as large as the frames),
    keeping all of them; after space is freed --resume finishes the file. So the log's
    estimate (frames, header, checkpoints) is not short."""
    import shutil

    from simcore.driver import _frames_bytes, _log_bytes
    from simcore.models import get_engine

    out = small_fs / "f.nc"
    args = ["run", "couzin", "--preset", "swarm", "--set", "n=50", "--steps", "200",
            "--write-every", "1", "--set", "checkpoint_every=20", "--format", "amber",
            "--quiet", "-o", out]
    params, settings, _ = resolve("couzin", preset="swarm", steps=200, write_every=1,
                                  format="amber", overrides={"n": 50, "checkpoint_every": 20})
    need = _log_bytes(_frames_bytes(get_engine("couzin"), params, settings), settings)
    page = 4096  # tmpfs allocates whole pages; the run's lock file takes one before the check
    spare = shutil.disk_usage(small_fs).free - (-(-need // page) + 1) * page
    (small_fs / "fill").write_bytes(b"\0" * spare)
    assert need + page <= shutil.disk_usage(small_fs).free < need + 2 * page
    text = assert_one_paragraph(run_cli(*args), "perhaps not for f.nc",
                                "All 201 frames are safe", "--resume")
    assert "has only" not in text
    (small_fs / "fill").unlink()
    run_cli(*args, "--resume", check_rc=0)
    assert sorted(p.name for p in small_fs.iterdir()) == ["f.nc"]


@pytest.mark.parametrize("bad", [None, 3, ""])
def test_open_trajectory_needs_a_path(bad):
    with pytest.raises(simcore.UserInputError, match="must be a str or pathlib.Path"):
        simcore.open_trajectory(bad)


# ------------------------------------------------------------------ the background assembler
@pytest.fixture
def fresh_workers():
    """No idle worker from an earlier test, and none of this test's left behind."""
    import simcore.io.assembler as assembler

    assembler.release_idle_workers()
    yield assembler
    assembler.release_idle_workers()


def test_background_assembly_equals_the_one_shot_assembly(tmp_path, monkeypatch,
                                                          fresh_workers, written_by_worker):
    """A run whose frames span several chunks: OUT.tmp written chunk by chunk by the worker
    process while the run goes on holds the same bytes as the file assembled at the end,
    also while another thread reads NetCDF files with xarray (netCDF-C is not thread-safe:
    a writer thread in this process crashed such a reader or the run)."""
    import threading

    import xarray as xr

    import simcore.io.assembler as assembler

    kw = dict(preset="swarm", steps=600, seed=4, write_every=2, overrides={"n": 1000})  # 4 chunks
    monkeypatch.setattr(assembler, "BACKGROUND_MIN_BYTES", 0)
    monkeypatch.setattr(assembler, "BACKGROUND", False)
    one_shot = simcore.run("couzin", out=tmp_path / "one_shot.nc", **kw)
    assert written_by_worker == [False]

    stop, reads = threading.Event(), []

    def read_meanwhile():
        while not stop.is_set():
            with xr.open_dataset(one_shot) as ds:
                reads.append(float(ds["coordinates"][-1].sum()))

    reader = threading.Thread(target=read_meanwhile)
    reader.start()
    try:
        monkeypatch.setattr(assembler, "BACKGROUND", True)
        background = simcore.run("couzin", out=tmp_path / "background.nc", **kw)
    finally:
        stop.set()
        reader.join()
    assert written_by_worker == [False, True] and len(reads) > 0 and len(set(reads)) == 1
    assert_same_file(background, one_shot)


_RUNS_IN_THREADS = """
import sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np, netCDF4, simcore
folder = sys.argv[1]
kw = dict(steps=300, seed=1, overwrite=True, quiet=True, threads=1)  # 31 frames: in-process
reference = simcore.run("couzin", out=f"{folder}/reference.nc", **kw)
with netCDF4.Dataset(reference) as ds:
    expected = ds["coordinates"][:].copy()
for round in range(10):
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda i: simcore.run("couzin", out=f"{folder}/r{i}.nc", **kw),
                             range(8)))
    for out in outs:
        with netCDF4.Dataset(out) as ds:
            assert np.array_equal(ds["coordinates"][:], expected), (round, out)
print("ok")
"""


def test_runs_in_threads_of_one_process_write_their_files_in_turn(tmp_path):
    """Runs in threads of one process (a ThreadPoolExecutor, dask's threaded scheduler)
    whose files are written in that process (short runs) take turns in netCDF-C, which is
    not thread-safe: 10 rounds of 8 runs on 4 threads crashed the process (segmentation
    fault creating the files) before simcore.io.nclock; each file must be the reference's.
    In a child process, so that a crash fails this test only."""
    proc = subprocess.run([sys.executable, "-c", _RUNS_IN_THREADS, str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


_GARBAGE_COLLECTED_MEANWHILE = """
import gc, sys, warnings
import numpy as np, netCDF4, xarray as xr, simcore
from simcore.io import assembler, h5chunks
warnings.simplefilter("ignore")
assembler.BACKGROUND = False  # the file is made in this process, created while encoding
folder = sys.argv[1]
kw = dict(steps=300, seed=1, overwrite=True, quiet=True)
reference = simcore.run("couzin", out=f"{folder}/reference.nc", **kw)
with netCDF4.Dataset(reference) as ds:
    expected = ds["coordinates"][:].copy()


class Holder:
    pass


columns, encode_frames = assembler.Assembler._columns, h5chunks.encode_frames


def columns_and_garbage(*args):  # before netCDF-C starts: datasets the user left open
    for _ in range(40):  # in reference cycles
        holder = Holder()
        holder.self, holder.ds = holder, xr.open_dataset(reference)
    return columns(*args)


def encode_and_collect(*args, **kwargs):  # beside netCDF-C: a collection, if one may run
    if gc.isenabled():
        gc.collect()
    return encode_frames(*args, **kwargs)


assembler.Assembler._columns = columns_and_garbage
h5chunks.encode_frames = encode_and_collect
for round in range(8):
    out = simcore.run("couzin", out=f"{folder}/run.nc", **kw)
    assert gc.isenabled(), "the collector was not turned back on"
    with netCDF4.Dataset(out) as ds:
        assert np.array_equal(ds["coordinates"][:], expected), round
print("ok")
"""


def test_no_garbage_collection_while_netcdf_c_runs_beside_other_threads(tmp_path):
    """A file made in the run's process after the last step is created by netCDF-C in a
    helper thread while this thread encodes the frames (and larger files' chunks are
    encoded on a pool while this thread writes them with HDF5). A garbage collection
    meanwhile finalises datasets the user left open in reference cycles (xarray's), whose
    close calls netCDF-C at the same time: the process crashed (SIGSEGV; seen in the test
    suite) or the write failed ("NetCDF: HDF error"), 3 times in 3 here. Automatic
    collection is off for the in-process assembly; here a collection runs in the encoding
    whenever it is on. In a child process, so that a crash fails this test only."""
    proc = subprocess.run([sys.executable, "-c", _GARBAGE_COLLECTED_MEANWHILE, str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), \
        (proc.returncode, proc.stderr[-2000:])


def test_a_killed_worker_leaves_the_file_to_the_run(tmp_path, monkeypatch, capsys,
                                                    fresh_workers):
    """The worker process dies (killed, out of memory): the run writes the whole file
    itself after the last step, from the log, says so, and the file has the right bits."""
    assembler = fresh_workers
    kw = dict(preset="swarm", steps=600, seed=4, write_every=2, overrides={"n": 1000})
    monkeypatch.setattr(assembler, "BACKGROUND_MIN_BYTES", 0)
    start_worker = assembler._start_worker

    def start_and_kill(*args):
        worker = start_worker(*args)
        worker[0].kill()
        worker[0].wait()
        return worker

    monkeypatch.setattr(assembler, "_start_worker", start_and_kill)
    out = simcore.run("couzin", out=tmp_path / "a.nc", **kw)
    assert "the file is written after the last step instead" in capsys.readouterr().err
    monkeypatch.setattr(assembler, "BACKGROUND", False)
    assert_same_file(out, simcore.run("couzin", out=tmp_path / "ref.nc", **kw))


def test_a_run_that_ends_before_its_worker_is_ready_writes_the_file_itself(
        tmp_path, monkeypatch, fresh_workers):
    """A short run does not wait for a worker still starting: it writes the file in its
    own thread, with the right bits, and leaves the worker to the process's next run; a
    worker that never gets ready is killed when a later run would take it."""
    import os
    import subprocess
    from multiprocessing.connection import Connection

    assembler = fresh_workers
    monkeypatch.setattr(assembler, "BACKGROUND_MIN_BYTES", 0)
    workers = []

    def never_ready(*args):  # a worker that never gets through its imports
        job_read, job_write = os.pipe()
        reply_read, reply_write = os.pipe()
        proc = subprocess.Popen(["sleep", "600"], pass_fds=(job_read, reply_write))
        os.close(job_read)
        workers.append((proc, reply_write))
        return proc, Connection(job_write, readable=False), Connection(reply_read,
                                                                       writable=False)

    monkeypatch.setattr(assembler, "_start_worker", never_ready)
    out = simcore.run("couzin", out=tmp_path / "a.nc", **KW)
    (proc, reply_write), = workers
    assert proc.poll() is None and [w.proc for w in assembler._idle] == [proc]  # not waited for
    monkeypatch.setattr(assembler, "_NEVER_READY_SECONDS", 0.0)
    again = simcore.run("couzin", out=tmp_path / "b.nc", **KW)
    assert proc.returncode == -9 and len(workers) == 2  # replaced
    for _, fd in workers:
        os.close(fd)
    monkeypatch.setattr(assembler, "BACKGROUND", False)
    reference = simcore.run("couzin", out=tmp_path / "ref.nc", **KW)
    assert_same_file(out, reference)
    assert_same_file(again, reference)


def test_one_worker_serves_a_process_s_runs_and_not_its_forked_children(tmp_path, monkeypatch,
                                                                        fresh_workers):
    """Runs in one process reuse its idle worker (the start is paid once) and each file has
    the bits of one written in-process; a forked child does not share the parent's worker
    (the pipes would carry two runs' messages at once), and the parent's still works."""
    import os
    import warnings

    assembler = fresh_workers
    kw = dict(preset="swarm", steps=400, seed=4, write_every=2, overrides={"n": 200})
    monkeypatch.setattr(assembler, "BACKGROUND_MIN_BYTES", 0)
    finish, served = assembler.Assembler.finish, []

    def finish_and_tell(self, *args, **kwargs):
        pid = self._worker.proc.pid if self._worker is not None else None
        while self._worker is not None and not self._ready:  # this test waits for it
            self._poll_worker()
            time.sleep(0.01)
        finish(self, *args, **kwargs)
        served.append((self.by_worker, pid))

    monkeypatch.setattr(assembler.Assembler, "finish", finish_and_tell)
    first = simcore.run("couzin", out=tmp_path / "a.nc", **kw)
    second = simcore.run("couzin", out=tmp_path / "b.nc", **dict(kw, seed=5))
    with warnings.catch_warnings():  # JAX's fork warning: this child touches no JAX
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        child = os.fork()
    if child == 0:
        os._exit(0 if not assembler._idle else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
    third = simcore.run("couzin", out=tmp_path / "c.nc", **kw)
    assert [by_worker for by_worker, _ in served] == [True, True, True]
    assert len({pid for _, pid in served}) == 1
    monkeypatch.setattr(assembler, "BACKGROUND", False)
    assert_same_file(first, simcore.run("couzin", out=tmp_path / "ref_a.nc", **kw))
    assert_same_file(second, simcore.run("couzin", out=tmp_path / "ref_b.nc", **dict(kw, seed=5)))
    assert_same_file(third, first)


def test_a_script_s_idle_worker_is_reaped_at_exit(tmp_path):
    """The worker kept for a process's next run exits with the process and is waited
    for: no "ResourceWarning: subprocess ... is still running" when warnings are shown."""
    code = ("import simcore\n"
            "simcore.run('harddisc', preset='collisionless', out='free.nc', quiet=True)\n")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ResourceWarning" not in proc.stderr, proc.stderr
    assert (tmp_path / "free.nc").exists()


def test_a_ctrl_c_while_the_idle_worker_exits_at_exit_kills_it_quietly(monkeypatch):
    """A Ctrl-C just after a finished run, while the exit handler waits for the idle
    worker, printed a KeyboardInterrupt traceback from the atexit callback."""
    import simcore.io.assembler as assembler

    killed = []

    class Proc:
        def kill(self):
            killed.append(True)

    class Worker:
        proc = Proc()

    def interrupted(worker):
        raise KeyboardInterrupt

    monkeypatch.setattr(assembler, "_idle", [Worker()])
    monkeypatch.setattr(assembler, "_discard", interrupted)
    assembler._release_at_exit()  # no KeyboardInterrupt escapes
    assert killed == [True] and assembler._idle == []


def test_a_process_on_one_core_starts_no_worker(tmp_path, monkeypatch, fresh_workers):
    """With one usable core a worker would only take it from the run: none is started."""
    assembler = fresh_workers
    monkeypatch.setattr(assembler, "BACKGROUND_MIN_BYTES", 0)
    monkeypatch.setattr(assembler, "_spare_core", lambda: False)
    started = []
    monkeypatch.setattr(assembler, "_start_worker", lambda: started.append(1))
    simcore.run("couzin", out=tmp_path / "a.nc", **KW)
    assert started == [] and assembler._idle == []


def _small_log(path, n_frames: int):
    """A synced frame log of ``n_frames`` frames of 4 particles (frame k: all coordinates k)."""
    from simcore.io.framelog import FrameLogWriter
    from simcore.io.trajectory import frame_schema

    schema = frame_schema(4, {"program": "simcore"}, {}, "float32", velocities=False)
    log = FrameLogWriter.create(path, schema)
    for k in range(n_frames):
        log.append({"time": float(k), "coordinates": np.full((4, 3), k, np.float32),
                    "cell_lengths": np.zeros(3)})
    log.sync()
    return log


def test_frame_log_checksums_survive_growth_and_reopening(tmp_path):
    """The log's CRC-32 list (an array grown by doubling) holds every frame's checksum
    of its bytes on disk, past several growths and after reopening; a view handed out
    earlier is read-only and keeps its frames while more are appended."""
    from simcore.io.framelog import FrameLogReader, FrameLogWriter, payload_size

    def on_disk(path):
        reader = FrameLogReader(path)
        records = reader.records()
        payload = payload_size(reader.dtype)
        crcs = [zlib.crc32(records[k:k + 1].view(np.uint8)[:payload]) for k in range(len(records))]
        reader.close()
        return np.array(crcs, np.uint32)

    path = tmp_path / "g.part"
    log = _small_log(path, 300)
    early = log.crcs
    np.testing.assert_array_equal(early, on_disk(path))
    with pytest.raises(ValueError):
        early[0] = 0
    before = early.copy()
    for k in range(300, 1100):  # past the first growths (256 -> 512 -> 1024 -> 2048)
        log.append({"time": float(k), "coordinates": np.full((4, 3), k, np.float32),
                    "cell_lengths": np.zeros(3)})
    log.sync()
    np.testing.assert_array_equal(early, before)
    np.testing.assert_array_equal(log.crcs, on_disk(path))
    log.close()
    crcs = on_disk(path)[:700]
    log = FrameLogWriter.reopen(path, crcs)  # cuts the 400 after the 700 "counted"
    log.append({"time": 700.0, "coordinates": np.full((4, 3), 7, np.float32),
                "cell_lengths": np.zeros(3)})
    log.sync()
    assert len(log.crcs) == 701
    np.testing.assert_array_equal(log.crcs, on_disk(path))
    log.close()


@pytest.mark.parametrize("where", ["payload", "record's checksum", "counted checksum"])
def test_first_bad_frame_checks_both_checksums_of_every_frame(tmp_path, monkeypatch, where):
    """A frame is bad if its bytes fail the checksum counted by the checkpoint or the one
    stored in its own record, whichever changed; the frames before it and a log with
    only intact frames pass (frames across several read blocks)."""
    from simcore.io import framelog
    from simcore.io.framelog import FrameLogReader

    n, bad = 900, 613
    log = _small_log(tmp_path / "x.part", n)
    crcs = log.crcs.copy()
    log.close()
    reader = FrameLogReader(tmp_path / "x.part")
    monkeypatch.setattr(framelog, "BUFFER_BYTES", 100 * reader.dtype.itemsize)  # 9 blocks
    assert reader.first_bad_frame(crcs) is None
    if where == "counted checksum":
        crcs[bad] ^= 1
    else:
        offset = reader.header_size + bad * reader.dtype.itemsize + (
            5 if where == "payload" else reader.dtype.fields["crc32"][1])
        with open(tmp_path / "x.part", "r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([byte[0] ^ 0x04]))
    assert FrameLogReader(tmp_path / "x.part").first_bad_frame(crcs) == bad
    assert FrameLogReader(tmp_path / "x.part").first_bad_frame(crcs[:bad]) is None


def test_background_assembler_refuses_a_frame_that_fails_its_checksum(tmp_path):
    from simcore.io.assembler import Assembler
    from simcore.io.framelog import DamagedLogError

    log = _small_log(tmp_path / "x.part", 600)
    crcs = log.crcs.copy()
    crcs[300] ^= 1  # as if the frame changed on disk after it was counted
    asm = Assembler(tmp_path / "x.part", tmp_path / "x.tmp", "netcdf4", background=True)
    asm.feed(600, crcs)
    with pytest.raises(DamagedLogError, match="frame 300 of the 600"):
        asm.finish(600, crcs)
    assert not (tmp_path / "x.tmp").exists()
    log.close()


def test_worker_checks_every_frame_it_was_told_of_in_pieces(tmp_path):
    """Checksums sent in many small pieces (none completes a chunk here) all reach the
    worker: the file it writes at the end equals the one written in this process."""
    from simcore.io.assembler import Assembler

    log = _small_log(tmp_path / "x.part", 1000)
    asm = Assembler(tmp_path / "x.part", tmp_path / "bg.nc", "netcdf4", background=True)
    for _ in range(3000):  # a run this short would not wait for its worker: this test does
        asm._poll_worker()
        if asm._ready:
            break
        time.sleep(0.01)
    for n in range(100, 1001, 100):
        asm.feed(n, log.crcs)
    asm.finish(1000, log.crcs)
    assert asm.by_worker
    Assembler(tmp_path / "x.part", tmp_path / "here.nc", "netcdf4").finish(1000, log.crcs)
    assert_same_file(tmp_path / "bg.nc", tmp_path / "here.nc")
    log.close()


def _ready_assembler(part, out):
    """A background Assembler whose worker is ready (a short run would not wait for it)."""
    from simcore.io.assembler import Assembler

    asm = Assembler(part, out, "netcdf4", background=True)
    for _ in range(3000):
        asm._poll_worker()
        if asm._ready:
            break
        time.sleep(0.01)
    assert asm._ready
    return asm


def test_worker_writes_the_chunks_its_caller_encoded(tmp_path, monkeypatch):
    """A file the worker has not begun (nothing fed: a run whose kernel fills the cores)
    whose frames fit one block: the caller encodes the chunks while the worker creates
    the file, and the worker writes them; the file is the one written in-process."""
    from simcore.io import assembler
    from simcore.io.assembler import Assembler

    log = _small_log(tmp_path / "x.part", 1000)
    encoded_here = []
    encode = Assembler._encode
    monkeypatch.setattr(Assembler, "_encode",
                        lambda self, *a: encoded_here.append(1) or encode(self, *a))
    asm = _ready_assembler(tmp_path / "x.part", tmp_path / "bg.nc")
    asm.finish(1000, log.crcs, attrs={"provenance": "{}"})
    assert asm.by_worker and encoded_here == [1]
    Assembler(tmp_path / "x.part", tmp_path / "here.nc", "netcdf4").finish(
        1000, log.crcs, attrs={"provenance": "{}"})
    assert_same_file(tmp_path / "bg.nc", tmp_path / "here.nc", ignore_attrs=())
    fed = _ready_assembler(tmp_path / "x.part", tmp_path / "fed.nc")  # fed: not encoded here
    fed.feed(1000, log.crcs)
    fed.finish(1000, log.crcs, attrs={"provenance": "{}"})
    assert fed.by_worker and encoded_here == [1]
    assert_same_file(tmp_path / "fed.nc", tmp_path / "here.nc", ignore_attrs=())
    # a file over the limit: encoded by the worker (here: in-process, on every core)
    monkeypatch.setattr(assembler, "_CALLER_ENCODES_BYTES", 999 * log.dtype.itemsize)
    large = _ready_assembler(tmp_path / "x.part", tmp_path / "large.nc")
    large.finish(1000, log.crcs, attrs={"provenance": "{}"})
    assert large.by_worker and encoded_here == [1]
    Assembler(tmp_path / "x.part", tmp_path / "large_here.nc", "netcdf4").finish(
        1000, log.crcs, attrs={"provenance": "{}"})
    for name in ("large.nc", "large_here.nc"):
        assert_same_file(tmp_path / name, tmp_path / "here.nc", ignore_attrs=())
    log.close()


def test_caller_that_finds_a_damaged_frame_stops_the_waiting_worker(tmp_path):
    """The caller checks every frame before encoding: a frame changed after it was counted
    is refused, the worker (waiting for the chunks) is told to stop and exits, no file."""
    from simcore.io.framelog import DamagedLogError

    log = _small_log(tmp_path / "x.part", 600)
    crcs = log.crcs.copy()
    crcs[300] ^= 1
    asm = _ready_assembler(tmp_path / "x.part", tmp_path / "x.tmp")
    proc = asm._worker.proc
    with pytest.raises(DamagedLogError, match="frame 300 of the 600"):
        asm.finish(600, crcs)
    assert proc.wait(timeout=60) == 0 and asm._worker is None
    assert not (tmp_path / "x.tmp").exists()
    log.close()


def test_worker_lost_before_the_callers_chunks_arrive(tmp_path, monkeypatch, capsys):
    """The worker dies while the caller encodes: the caller writes the whole file itself
    and says so; the file is the one written in-process."""
    from simcore.io.assembler import Assembler

    log = _small_log(tmp_path / "x.part", 700)
    encode = Assembler._encode

    def encode_then_lose_the_worker(self, *args):
        self._worker.proc.kill()
        self._worker.proc.wait()
        return encode(self, *args)

    monkeypatch.setattr(Assembler, "_encode", encode_then_lose_the_worker)
    asm = _ready_assembler(tmp_path / "x.part", tmp_path / "bg.nc")
    asm.finish(700, log.crcs)
    assert not asm.by_worker
    assert "the file is written after the last step instead" in capsys.readouterr().err
    monkeypatch.undo()
    Assembler(tmp_path / "x.part", tmp_path / "here.nc", "netcdf4").finish(700, log.crcs)
    assert_same_file(tmp_path / "bg.nc", tmp_path / "here.nc", ignore_attrs=())
    log.close()


def test_worker_creates_the_file_with_the_first_frame(tmp_path):
    """The worker creates the file as soon as the log holds a frame, not with the first
    whole chunk (in a short run that chunk completes just before the end, where the caller
    would wait for the ~7 ms of definitions); the file is the one written in-process."""
    from simcore.io.assembler import Assembler

    log = _small_log(tmp_path / "x.part", 10)  # 10 frames: less than one chunk
    out = tmp_path / "bg.nc"
    asm = Assembler(tmp_path / "x.part", out, "netcdf4", background=True)
    for _ in range(3000):
        asm._poll_worker()
        if asm._ready:
            break
        time.sleep(0.01)
    asm.feed(1, log.crcs)
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.exists()
    asm.finish(10, log.crcs)
    assert asm.by_worker
    Assembler(tmp_path / "x.part", tmp_path / "here.nc", "netcdf4").finish(10, log.crcs)
    assert_same_file(out, tmp_path / "here.nc")
    log.close()


@pytest.mark.parametrize("background", [False, True])
def test_state_and_attributes_announced_at_the_start(tmp_path, background):
    """A final state of the announced layout goes into the variables defined with the file;
    an attribute that changed since the start is written at the end; a final state of
    another layout is refused (a bug in the caller, not a file with a wrong state)."""
    from simcore.io.assembler import Assembler, AssemblerFailure
    from simcore.io.trajectory import read_state, state_layout

    log = _small_log(tmp_path / "x.part", 1000)
    state = {"positions": np.arange(8.0).reshape(4, 2), "seed": np.array([7], np.uint64),
             "empty": np.zeros(0, np.int32)}
    asm = Assembler(tmp_path / "x.part", tmp_path / "a.nc", "netcdf4", background=background,
                    attrs={"provenance": "start", "note": "kept"},
                    state_layout=state_layout(state))
    for _ in range(3000 if background else 0):  # the worker's path: wait until it is ready
        asm._poll_worker()
        if asm._ready:
            break
        time.sleep(0.01)
    asm.feed(1000, log.crcs)
    asm.finish(1000, log.crcs, attrs={"provenance": "end", "note": "kept"}, final_state=state)
    assert asm.by_worker == background
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        assert (ds.provenance, ds.note, ds.program) == ("end", "kept", "simcore")
    stored = read_state(tmp_path / "a.nc")
    assert state_layout(stored) == state_layout(state)
    for name, value in state.items():
        np.testing.assert_array_equal(stored[name], value)
    asm = Assembler(tmp_path / "x.part", tmp_path / "b.nc", "netcdf4", background=background,
                    state_layout=state_layout(state))
    # (from a worker: an AssemblerFailure carrying the ValueError's traceback)
    with pytest.raises((ValueError, AssemblerFailure), match="not the one announced"):
        asm.finish(1000, log.crcs, final_state={**state, "seed": np.array([7, 8], np.uint64)})
    assert not (tmp_path / "b.nc").exists()
    log.close()


@pytest.mark.parametrize("job_waiting", [False, True])
def test_a_block_is_synced_early_unless_the_next_job_waits(tmp_path, monkeypatch, job_waiting):
    """The worker fdatasyncs the file and the log after a block of frames (so that the
    final fsyncs wait for the end only), but not when its next job is already waiting:
    that job, or the finish's fsync, covers it. The file is complete either way."""
    from simcore.io import assembler

    log = _small_log(tmp_path / "x.part", 1000)
    synced = []
    monkeypatch.setattr(assembler.os, "fdatasync", lambda fd: synced.append(fd))
    asm = assembler.Assembler(tmp_path / "x.part", tmp_path / "c.nc", "netcdf4")
    asm.job_waiting = lambda: job_waiting
    asm._run(("frames", 1000, log.crcs))
    assert asm._error is None and 0 < asm.written < 1000
    assert len(synced) == (0 if job_waiting else 2)
    asm._run(("finish", 1000, log.crcs, None, None))
    assert asm._error is None
    with netCDF4.Dataset(tmp_path / "c.nc") as ds:
        ds.set_auto_mask(False)
        np.testing.assert_array_equal(ds["coordinates"][:, 0, 0], np.arange(1000))
    log.close()


def test_frame_log_crc32_is_zlibs():
    """The log's CRC-32 (ISA-L's where installed) has zlib's values: logs and checkpoints
    of earlier versions still verify."""
    import zlib

    from simcore.io.framelog import crc32

    rng = np.random.default_rng(3)
    for size in (0, 1, 7, 64, 1000, 123457):
        data = rng.integers(0, 256, size, dtype=np.uint8)
        assert crc32(data) == zlib.crc32(data)


def test_worker_errors_keep_their_kind_across_the_pipe(tmp_path):
    """What the worker process sends back decodes to the exception the caller's messages
    are chosen by: a full disk stays a full disk, a bug stays a bug (not exit 2)."""
    from simcore.io.assembler import AssemblerFailure, _decode, _encode
    from simcore.io.framelog import DamagedLogError
    from simcore.io.write_errors import is_space_error

    full = _decode(_encode(OSError(28, "No space left on device")))
    assert isinstance(full, OSError) and is_space_error(full, tmp_path / "x.nc")
    hdf = _decode(_encode(RuntimeError("NetCDF: HDF error")))
    assert type(hdf) is RuntimeError and not is_space_error(hdf, tmp_path / "x.nc")
    damaged = _decode(_encode(DamagedLogError("frame 3 is damaged")))
    assert isinstance(damaged, DamagedLogError) and str(damaged) == "frame 3 is damaged"
    try:
        {}["missing"]
    except KeyError as exc:
        bug = _decode(_encode(exc))
    assert isinstance(bug, AssemblerFailure) and "KeyError" in str(bug)
    assert not isinstance(bug, simcore.UserInputError)


def test_chunk_length_leaves_the_last_frame_alone(tmp_path):
    """The frame-axis chunk length comes from the run's frame count: the last chunk (written
    after the last step) holds the last frame alone when a length in range divides n - 1;
    a log without ``frames_per_chunk`` (older versions) keeps about 2 MiB per chunk."""
    import netCDF4

    from simcore.io.trajectory import _frames_per_chunk, chunk_frames, frame_schema

    schema = frame_schema(4000, {}, {}, "float32")  # ~96 KB per frame (8-byte items)
    assert _frames_per_chunk(schema) == 21
    assert chunk_frames(schema, 101) == 5 and chunk_frames(schema, 3) == 2
    assert (97 - 1) % chunk_frames(schema, 97) == 0
    assert 1 <= chunk_frames(schema, 1) <= 21
    out = simcore.run("couzin", out=tmp_path / "c.nc", preset="swarm", steps=3000,
                      write_every=10, seed=1, overrides={"n": 100}, quiet=True)
    with netCDF4.Dataset(out) as ds:  # 301 frames: 150 + 150 + 1
        assert ds["coordinates"].chunking()[0] == 150


def test_uncompressed_files_hold_the_same_values(tmp_path):
    """compression="none" (a run setting, passed like the others in overrides) writes the
    per-atom variables without filters, and every value equals that of the default (zlib)
    file."""
    import netCDF4

    kw = dict(preset="swarm", steps=400, write_every=10, seed=3, quiet=True)
    zipped = simcore.run("couzin", out=tmp_path / "z.nc", overrides={"n": 50}, **kw)
    plain = simcore.run("couzin", out=tmp_path / "p.nc",
                        overrides={"n": 50, "compression": "none"}, **kw)
    with netCDF4.Dataset(zipped) as a, netCDF4.Dataset(plain) as b:
        assert a["coordinates"].filters()["zlib"] and not b["coordinates"].filters()["zlib"]
        assert not b["coordinates"].filters()["shuffle"]
        for name in ("coordinates", "velocities", "time"):
            assert a[name][:].tobytes() == b[name][:].tobytes(), name


def _ready(worker, seconds: float = 30.0) -> bool:
    """Whether the writer's ``worker`` says it is ready within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not worker.ready and time.monotonic() < deadline:
        worker.usable()
        time.sleep(0.01)
    return worker.ready


def test_a_worker_started_in_another_folder_writes_a_relative_output(tmp_path, monkeypatch,
                                                                     fresh_workers,
                                                                     written_by_worker):
    """A process's idle worker keeps the working folder it started in; a later run with a
    relative output path in another folder (a notebook's os.chdir, the docs' test) must
    still have its file written where it asked, by the worker (it was handed relative
    paths and could not find the log: "Cannot read free.nc.part")."""
    assembler = fresh_workers
    monkeypatch.setattr(assembler, "BACKGROUND_MIN_BYTES", 0)
    monkeypatch.setattr(assembler, "_spare_core", lambda: True)
    import simcore.driver as driver

    monkeypatch.setattr(driver, "_writer_beside_run", lambda *args: True)  # fed as it runs
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    monkeypatch.chdir(tmp_path / "first")
    assembler.prestart(1)
    (worker,) = assembler._idle
    assert _ready(worker)  # through its imports
    monkeypatch.chdir(tmp_path / "second")
    simcore.run("couzin", out="rel.nc", **KW)
    assert written_by_worker == [True]
    assert (tmp_path / "second" / "rel.nc").exists()
    assert not (tmp_path / "first" / "rel.nc").exists()


def test_the_worker_loads_numpy_with_one_blas_thread(monkeypatch, fresh_workers):
    """The worker does no linear algebra; OpenBLAS's pool would spin ~0.1 s of a core after
    NumPy loads, beside a run's threads (a notebook's first threaded run: 0.35 -> 0.30 s
    with one thread). A caller's own setting stays the caller's."""
    import os

    assembler = fresh_workers
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    monkeypatch.setattr(assembler, "_spare_core", lambda: True)
    assembler.prestart(assembler.BACKGROUND_MIN_BYTES)
    (worker,) = assembler._idle
    # until the new program has set up its stack, /proc/PID/environ reads empty (Linux
    # wakes the parent of a vfork before that: a race on a loaded machine); 'ready' is after
    assert _ready(worker)
    with open(f"/proc/{worker.proc.pid}/environ", "rb") as f:
        environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    assert environ[b"OPENBLAS_NUM_THREADS"] == b"1"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"


def test_an_output_that_cannot_be_replaced_is_reported_and_kept(tmp_path, monkeypatch):
    """--overwrite onto a file the file system will not replace (an immutable file:
    EPERM from rename) raised PermissionError after the run (exit 1, OUT.tmp left);
    now a UserInputError naming the output, the old file intact and OUT.tmp removed."""
    import errno

    import simcore.driver as driver

    out = tmp_path / "r.nc"
    simcore.run("couzin", out=out, **KW)
    before = out.read_bytes()

    def refuse(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))

    monkeypatch.setattr(driver, "replace", refuse)
    with pytest.raises(UserInputError, match=r"Writing .*r\.nc failed \(Operation not "
                                             r"permitted\)"):
        simcore.run("couzin", out=out, overwrite=True, **dict(KW, seed=5))
    assert out.read_bytes() == before
    assert not out.with_name("r.nc.tmp").exists()
