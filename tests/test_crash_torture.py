"""Crash torture: kill real runs at random instants, resume, and require the same bits.

Every model and both file formats: the run is started as a real ``simcore run`` process,
killed with SIGKILL or SIGTERM at a random instant (seeded, so a failure reproduces from
its test id), rerun with ``--resume`` (itself sometimes killed again), and the finished
file must equal an uninterrupted run bit for bit (all variables, all attributes but
``provenance``). By design (docs/architecture.md) no checkpointed frame can be lost to a
kill, so ``--resume`` must always succeed: an exit code 2 here is a failure too.

The fast tier (in ``make test``) kills each model × format once; the slow tier
(``make test-slow``) kills each model 12 times. A ``ulimit -f`` full disk followed by
``--resume`` is tested for every model in the fast tier.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import simcore
from simcore.io.checkpoint import read_checkpoint_meta

from conftest import assert_one_paragraph, assert_same_file

# small runs whose frame loop lasts ~1-4 s on one core: many frames and checkpoints
CASES = {
    "couzin": ["--preset", "swarm", "--set", "n=200", "--steps", "3000", "--write-every", "10"],
    "abp": ["--set", "n=1024", "--steps", "30000", "--write-every", "100"],
    "harddisc": ["--set", "n=2000", "--set", "t_end=20", "--set", "frame_dt=0.1"],
    "linear": ["--set", "n=500", "--steps", "6000", "--write-every", "10"],
}
COMMON = ["--seed", "5", "--set", "checkpoint_every=5", "--quiet", "--threads", "1"]


def _cmd(model, fmt, out, *extra):
    return [sys.executable, "-m", "simcore.cli", "run", model, *CASES[model], *COMMON,
            "--format", fmt, "-o", str(out), *extra]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted runs, one per model × format (made on demand, kept for the module)."""
    made = {}
    folder = tmp_path_factory.mktemp("references")

    def get(model, fmt):
        if (model, fmt) not in made:
            out = folder / f"{model}-{fmt}.nc"
            proc = subprocess.run(_cmd(model, fmt, out), capture_output=True, text=True,
                                  timeout=600)
            assert proc.returncode == 0, proc.stderr
            made[model, fmt] = out
        return made[model, fmt]

    return get


def _frames_checkpointed(out):
    meta = read_checkpoint_meta(out.with_name(out.name + ".ckpt"))
    return 0 if meta is None else meta["frames_written"]


def _kill_at_random(cmd, out, sig, rng, timeout=300):
    """Start ``cmd``; kill it with ``sig`` at a random instant. Returns (exit code, when).

    One time in four the instant is drawn from the start of the process (imports, JIT,
    creation of the partial file); otherwise from the frame loop, once the second
    checkpoint exists, up to 2.5 s into it (which may reach the final assembly).
    """
    early = rng.random() < 0.25
    delay = rng.uniform(0.0, 3.0 if early else 2.5)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    if not early:
        while proc.poll() is None and _frames_checkpointed(out) < 5:
            if time.monotonic() - t0 > timeout:
                proc.kill()
                pytest.fail("the run never reached its second checkpoint")
            time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    _no_writer_left(out)
    where = f"{'start' if early else 'loop'}+{delay:.3f}s"
    if proc.returncode not in (0, -signal.SIGKILL, 128 + signal.SIGTERM, -signal.SIGTERM):
        pytest.fail(f"killed run ended with {proc.returncode} ({where}): {err}")
    if sig == signal.SIGTERM and proc.returncode == 128 + signal.SIGTERM:
        assert "--resume" in err and "checkpoint written" in err
    return proc.returncode, where


def _no_writer_left(out, timeout=30.0):
    """The run's NetCDF worker process (simcore.io.assembler) exits with the run, however
    the run ends: it must not go on writing OUT.tmp, or hold it open, after a kill."""
    tmp = str(out) + ".tmp"
    t0 = time.monotonic()
    while True:
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target == tmp or target == tmp + " (deleted)":
                    left.append(pid)
        if not left:
            return
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"a process still holds {tmp} after its run ended (pids {left})")
        time.sleep(0.05)


def _torture(model, fmt, sig, seed, references, tmp_path, kills=1):
    rng = np.random.default_rng(seed)
    out = tmp_path / f"{model}.nc"
    cmd = _cmd(model, fmt, out)
    history = []
    for i in range(kills):
        extra = ["--resume"] if i else []
        history.append(_kill_at_random(cmd + extra, out, sig, rng))
        if history[-1][0] == 0:
            break
    final = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, (history, final.stderr)
    assert not any(out.with_name(out.name + s).exists() for s in (".part", ".ckpt", ".lock"))
    assert_same_file(references(model, fmt), out)


FAST = [(m, fmt, sig) for m in CASES for fmt, sig in
        (("netcdf4", signal.SIGKILL), ("amber", signal.SIGTERM))]


@pytest.mark.parametrize("model,fmt,sig", FAST, ids=[f"{m}-{f}-{s.name}" for m, f, s in FAST])
def test_kill_then_resume_is_bit_identical(model, fmt, sig, references, tmp_path):
    seed = [*CASES].index(model) * 10 + (fmt == "amber")
    _torture(model, fmt, sig, seed, references, tmp_path)


SLOW = [(m, i) for m in CASES for i in range(12)]


@pytest.mark.slow
@pytest.mark.parametrize("model,i", SLOW, ids=[f"{m}-{i}" for m, i in SLOW])
def test_kill_torture_slow(model, i, references, tmp_path):
    fmt = ("netcdf4", "amber")[i % 2]
    sig = (signal.SIGKILL, signal.SIGTERM)[(i // 2) % 2]
    _torture(model, fmt, sig, 1000 + 100 * [*CASES].index(model) + i, references, tmp_path,
             kills=1 + i % 3)


@pytest.mark.parametrize("model", list(CASES))
def test_full_disk_then_resume_is_bit_identical(model, references, tmp_path):
    """``ulimit -f``: writes fail with EFBIG part-way; exit 2 says 'disk is full' and
    --resume after the limit is lifted ends with the uninterrupted run's bits."""
    fmt = "amber" if model in ("abp", "linear") else "netcdf4"
    ref = references(model, fmt)
    out = tmp_path / f"{model}.nc"
    limit = ref.stat().st_size // 3

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(_cmd(model, fmt, out), preexec_fn=small_files, capture_output=True,
                          text=True, timeout=600)
    assert_one_paragraph(proc, "disk is full or a file-size limit was reached", "--resume")
    assert not out.exists() and _frames_checkpointed(out) >= 1
    proc = subprocess.run(_cmd(model, fmt, out, "--resume"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert_same_file(ref, out)


def test_sigterm_checkpoints_where_it_stops(tmp_path):
    """SIGTERM at a known frame: exit 143, a checkpoint at that frame (not at the last
    periodic one), and --resume continues from there."""
    out = tmp_path / "t.nc"
    cmd = [sys.executable, "-m", "simcore.cli", "run", "couzin", "--preset", "swarm",
           "--set", "n=300", "--steps", "200000", "--write-every", "10", "--seed", "1",
           "--set", "checkpoint_every=100000", "--set", "checkpoint_seconds=3600",
           "--threads", "1", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = out.with_name("t.nc.part")
    t0 = time.monotonic()
    # no checkpoint is due for an hour; wait until the loop has run a while
    while proc.poll() is None and (not part.exists() or time.monotonic() - t0 < 6):
        time.sleep(0.05)
    assert _frames_checkpointed(out) == 0
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    step = int(err.split("at step ")[1].split()[0])
    assert step > 0 and "--resume" in err
    frames = _frames_checkpointed(out)
    assert frames == step // 10 + 1
    with simcore.open_trajectory(part) as ds:  # the stopped run's frames are readable
        assert ds.sizes["time"] == frames
    resumed = subprocess.Popen(cmd + ["--resume"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    resumed.send_signal(signal.SIGINT)
    _, err2 = resumed.communicate(timeout=120)
    assert resumed.returncode == 130, err2
    assert f"Resuming {out} at step {step} of 200000" in err2
    assert _frames_checkpointed(out) > frames


@pytest.mark.parametrize("fmt", ["netcdf4", "amber"])
def test_running_part_is_readable_and_equals_the_final_frames(fmt, references, tmp_path):
    """open_trajectory and `simcore info` on OUT.part: the checkpointed frames, exactly
    the first frames of the finished file."""
    from simcore.config import resolve
    from simcore.driver import run_model

    out = tmp_path / "p.nc"
    kw = dict(preset="swarm", steps=3000, seed=5, write_every=10, format=fmt,
              overrides={"n": 200, "checkpoint_every": 5})
    params, settings, preset = resolve("couzin", **kw)
    with pytest.raises(KeyboardInterrupt):
        run_model("couzin", params, settings, out, preset=preset, quiet=True,
                  stop_after_frames=23)
    part = out.with_name("p.nc.part")
    proc = subprocess.run([sys.executable, "-m", "simcore.cli", "info", str(part)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "frames:     23" in proc.stdout, proc.stderr
    ref = references("couzin", fmt)
    with simcore.open_trajectory(part) as p, simcore.open_trajectory(ref) as r:
        assert p.sizes["time"] == 23
        for name in r.data_vars:
            np.testing.assert_array_equal(p[name].values, r[name].values[:23], err_msg=name)
        assert p.simcore.params == r.simcore.params
    assert os.path.exists(part)  # reading never changes the run's files
