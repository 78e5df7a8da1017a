"""Issue 12 item 6: memory checked up front (simcore._memory)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import simcore
from simcore import _memory
from simcore._errors import UserInputError
from simcore.config import resolve


@pytest.fixture
def little_memory(monkeypatch):
    """Pretend only 1 MiB is available (and the skip variable is unset)."""
    monkeypatch.delenv(_memory.SKIP_ENV, raising=False)
    monkeypatch.setattr(_memory, "available_bytes", lambda: 2 ** 20)


def test_meminfo_is_read(tmp_path):
    f = tmp_path / "meminfo"
    f.write_text("MemTotal:       1000 kB\nMemFree:         10 kB\nMemAvailable:    300 kB\n")
    assert _memory._meminfo_available(str(f)) == 300 * 1024
    f.write_text("MemTotal: 1000 kB\n")
    assert _memory._meminfo_available(str(f)) is None
    assert _memory._meminfo_available(str(tmp_path / "missing")) is None


def test_available_bytes_is_positive_here():
    avail = _memory.available_bytes()
    assert avail is None or avail > 0


def _cgroup_tree(tmp_path, limits):
    """A fake /sys/fs/cgroup with v2 files at job/ and job/step/; /proc/self/cgroup."""
    root = tmp_path / "cg"
    for rel, (limit, used) in limits.items():
        d = root / rel if rel else root
        d.mkdir(parents=True, exist_ok=True)
        (d / "memory.max").write_text(f"{limit}\n")
        (d / "memory.current").write_text(f"{used}\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/job/step\n")
    return root, proc


def test_cgroup_v2_limit_of_the_process_and_its_ancestors(tmp_path):
    root, proc = _cgroup_tree(tmp_path, {"": ("max", 0), "job": (10_000, 4_000),
                                         "job/step": ("max", 1_000)})
    assert _memory.cgroup_remaining(root, proc) == 6_000  # the parent's limit binds
    root, proc = _cgroup_tree(tmp_path / "b", {"": ("max", 0), "job": ("max", 0),
                                               "job/step": (5_000, 1_000)})
    assert _memory.cgroup_remaining(root, proc) == 4_000
    root, proc = _cgroup_tree(tmp_path / "c", {"": ("max", 0), "job": ("max", 0),
                                               "job/step": ("max", 0)})
    assert _memory.cgroup_remaining(root, proc) is None


def test_cgroup_v1_limit(tmp_path):
    root = tmp_path / "cg"
    d = root / "memory" / "slurm" / "job1"
    d.mkdir(parents=True)
    (d / "memory.limit_in_bytes").write_text("8000\n")
    (d / "memory.usage_in_bytes").write_text("3000\n")
    (root / "memory" / "memory.limit_in_bytes").write_text(str(2 ** 63 - 4096))  # no limit
    proc = tmp_path / "cgroup"
    proc.write_text("12:cpuset:/\n4:memory:/slurm/job1\n")
    assert _memory.cgroup_remaining(root, proc) == 5000


def test_available_bytes_honours_the_cgroup(monkeypatch):
    monkeypatch.setattr(_memory, "_meminfo_available", lambda: 10 * 2 ** 30)
    monkeypatch.setattr(_memory, "cgroup_remaining", lambda: 3 * 2 ** 30)
    assert _memory.available_bytes() == 3 * 2 ** 30
    monkeypatch.setattr(_memory, "cgroup_remaining", lambda: None)
    assert _memory.available_bytes() == 10 * 2 ** 30
    monkeypatch.setattr(_memory, "_meminfo_available", lambda: None)
    monkeypatch.setattr(_memory, "_sysconf_available", lambda: 123)
    assert _memory.available_bytes() == 123


def test_check_memory_states_the_estimate_and_the_available(little_memory, monkeypatch):
    with pytest.raises(UserInputError) as info:
        _memory.check_memory(3 * 2 ** 30, "The job", "Do less.")
    msg = str(info.value)
    assert "The job needs about 3.0 GiB" in msg and "only 1.0 MiB is available" in msg
    assert "Do less." in msg and "SIMCORE_SKIP_MEMORY_CHECK=1" in msg
    _memory.check_memory(2 ** 19, "The job", "Do less.")  # fits
    monkeypatch.setenv(_memory.SKIP_ENV, "1")
    _memory.check_memory(3 * 2 ** 30, "The job", "Do less.")  # skipped


@pytest.mark.parametrize("model,overrides", [
    ("abp", {"n": 100_000_000}), ("couzin", {"n": 50_000_000}),
    ("harddisc", {"n": 50_000_000, "phi": 0.1}), ("linear", {"n": 100_000_000}),
])
def test_check_run_memory_refuses_huge_runs(monkeypatch, model, overrides):
    monkeypatch.delenv(_memory.SKIP_ENV, raising=False)
    monkeypatch.setattr(_memory, "available_bytes", lambda: 4 * 2 ** 30)
    params, settings, _ = resolve(model, overrides=overrides)
    need = _memory.run_bytes(model, params, settings)
    assert need > 4 * 2 ** 30
    with pytest.raises(UserInputError, match=f"The {model} run with n = {params.n} needs "
                       r"about .* GiB.*only 4.0 GiB is available.*about n <= [\d,]+ fit"):
        _memory.check_run_memory(model, params, settings)
    small, settings, _ = resolve(model, overrides={"n": 1000})
    _memory.check_run_memory(model, small, settings)  # fits


def test_a_run_of_very_many_frames_is_refused_with_the_frame_count(monkeypatch):
    """Every frame's checksum stays in memory: 10^9 frames of 2 agents need gigabytes,
    and the advice is to write fewer frames (not fewer agents) with how many fit."""
    monkeypatch.delenv(_memory.SKIP_ENV, raising=False)
    monkeypatch.setattr(_memory, "available_bytes", lambda: 4 * 2 ** 30)
    params, settings, _ = resolve("couzin", overrides={"n": 2}, steps=10**9, write_every=1)
    few, few_settings, _ = resolve("couzin", overrides={"n": 2}, steps=10**6, write_every=1)
    grown = _memory.run_bytes("couzin", params, settings) - \
        _memory.run_bytes("couzin", few, few_settings)
    assert grown == pytest.approx(_memory.CHECKSUM_BYTES_PER_FRAME * (10**9 - 10**6), rel=1e-3)
    with pytest.raises(UserInputError, match=r"Write fewer frames .*about [\d,]+ frames fit "
                       r"now against 1,000,000,001"):
        _memory.check_run_memory("couzin", params, settings)
    _memory.check_run_memory("couzin", few, few_settings)  # fits


def test_run_estimate_grows_with_n_and_precision():
    # two frames: the writer's buffers (capped at tens of MiB for long runs) stay linear in n
    few = dict(steps=200, write_every=200)
    p1, s32, _ = resolve("abp", overrides={"n": 10_000}, **few)
    p2, _, _ = resolve("abp", overrides={"n": 20_000}, **few)
    _, s64, _ = resolve("abp", overrides={"n": 10_000, "precision": "float64"}, **few)
    a, b = (_memory.run_bytes("abp", p, s32) - _memory.FIXED_BYTES for p in (p1, p2))
    assert b == pytest.approx(2 * a, rel=0.01)
    assert _memory.run_bytes("abp", p1, s64) > _memory.run_bytes("abp", p1, s32)
    soft, _, _ = resolve("abp", overrides={"n": 10_000, "potential": "soft_harmonic"})
    assert _memory.run_bytes("abp", soft, s32) > _memory.run_bytes("abp", p1, s32)  # longer lists


def test_driver_checks_the_run_before_creating_files(little_memory, tmp_path):
    out = tmp_path / "big.nc"
    with pytest.raises(UserInputError, match="The couzin run with n = 5000 needs about"):
        simcore.run("couzin", steps=10, overrides={"n": 5000}, out=out)
    assert list(tmp_path.iterdir()) == []  # not even a lock file is left


MEASURE = textwrap.dedent("""
    import json, sys
    import simcore
    from simcore import _memory
    from simcore.config import resolve
    model, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    kw = dict(abp=dict(steps=20, write_every=10), couzin=dict(steps=2, write_every=1),
              harddisc=dict(), linear=dict(steps=20, write_every=10))[model]
    def extra(n):
        return dict(abp={"potential": "wca", "phi": 0.4}, harddisc={"t_end": 2.0}, linear={},
                    couzin={"boundary": "periodic", "box": (n / 0.5) ** (1 / 3), "r_o": 2.0,
                            "r_a": 3.0})[model]
    # the file assembled in this process, as small runs do: larger runs hand the blocks
    # of frames to a worker process (simcore.io.assembler), so this one's peak is lower
    import simcore.io.assembler
    simcore.io.assembler.BACKGROUND = False
    # warm-up above the engines' threading thresholds: no JIT compilation in the measured
    # run. Compiled in a child first: memory freed after a compilation here (LLVM's, up to
    # a GB on a cold Numba cache) would be reused by the measured run without raising the
    # high-water mark, which would then undercount it.
    import subprocess
    warm = ("import sys, simcore, simcore.io.assembler as a; a.BACKGROUND = False; "
            "simcore.run(sys.argv[1], out=sys.argv[2], overrides=eval(sys.argv[3]), "
            "**eval(sys.argv[4]))")
    subprocess.run([sys.executable, "-c", warm, model, out + ".child.nc",
                    repr(dict(extra(2048), n=2048)), repr(kw)], check=True)
    simcore.run(model, out=out + ".small.nc", overrides=dict(extra(2048), n=2048), **kw)
    def status(key):
        with open("/proc/self/status") as f:
            return [int(l.split()[1]) * 1024 for l in f if l.startswith(key)][0]
    # the peak of the measured run alone: reset the high-water mark (the warm-up's JIT
    # compilation can peak at a GB when the Numba cache is cold)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status("VmRSS")
    simcore.run(model, out=out, overrides=dict(extra(n), n=n), **kw)
    peak = status("VmHWM")
    params, settings, _ = resolve(model, overrides=dict(extra(n), n=n), **kw)
    est = _memory.run_bytes(model, params, settings) - _memory.FIXED_BYTES
    print(json.dumps({"measured": peak - base, "estimate": est}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("model,n", [("abp", 100_000), ("harddisc", 100_000),
                                     ("linear", 400_000), ("couzin", 60_000)])
def test_run_estimate_matches_the_measured_peak_within_a_factor_2(tmp_path, model, n):
    import json

    proc = subprocess.run([sys.executable, "-c", MEASURE, model, str(n), str(tmp_path / "m.nc")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["measured"] > 5 * 2 ** 20  # the run's arrays, not noise
    assert 0.5 <= r["estimate"] / r["measured"] <= 2.0, r


def test_analyze_refuses_with_the_estimate(little_memory, tmp_path, capsys, monkeypatch):
    from simcore.cli import main

    monkeypatch.setenv(_memory.SKIP_ENV, "1")  # the run alone would be refused too
    traj = simcore.run("couzin", steps=20, write_every=10, overrides={"n": 10},
                       out=tmp_path / "c.nc")
    monkeypatch.delenv(_memory.SKIP_ENV)
    assert main(["analyze", str(traj)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Analysing" in err and "couzin, 10 particles, 3 frames" in err
    assert "needs about" in err and "only 1.0 MiB is available" in err


def test_analyze_runs_with_the_override(little_memory, tmp_path, monkeypatch, capsys):
    from simcore.cli import main

    monkeypatch.setenv(_memory.SKIP_ENV, "1")
    traj = simcore.run("couzin", steps=20, write_every=10, overrides={"n": 10},
                       out=tmp_path / "c.nc")
    assert main(["analyze", str(traj)]) == 0


def test_analysis_estimate_counts_the_frames_the_analysis_holds():
    p, _, _ = resolve("linear", overrides={"n": 1000})
    small = _memory.analysis_bytes("linear", 1000, 10, p)
    big = _memory.analysis_bytes("linear", 1000, 1000, p)
    assert big - _memory.FIXED_BYTES > 50 * (small - _memory.FIXED_BYTES)
    # the abp MSD keeps at most 20000 particles over all frames
    assert _memory.analysis_bytes("abp", 10 ** 6, 100) < _memory.analysis_bytes("abp", 10 ** 6, 1000)
    # couzin is read one frame at a time
    assert _memory.analysis_bytes("couzin", 1000, 10 ** 4) < 2 * _memory.analysis_bytes(
        "couzin", 1000, 10)


@pytest.mark.parametrize("value,on", [("1", True), ("true", True), (" YES ", True), ("True", True),
                                      ("", False), ("0", False), ("no", False), ("2", False)])
def test_the_skip_switches_share_one_reading(value, on, little_memory, monkeypatch, tmp_path):
    """SIMCORE_SKIP_MEMORY_CHECK and SIMCORE_SKIP_DISK_CHECK read 1/true/yes the same way
    (one helper, simcore._env.env_flag): each check is skipped exactly when it is on."""
    from simcore._env import env_flag
    from simcore.io import outputs

    monkeypatch.setattr(outputs, "free_bytes", lambda path: 0)
    monkeypatch.setenv(_memory.SKIP_ENV, value)
    monkeypatch.setenv(outputs.SKIP_SPACE_ENV, value)
    assert env_flag(_memory.SKIP_ENV) is on and env_flag(outputs.SKIP_SPACE_ENV) is on
    checks = [lambda: _memory.check_memory(3 * 2 ** 30, "The job", "Do less."),
              lambda: outputs.check_space(tmp_path / "run.nc", 2 ** 20, 2 ** 20)]
    for check in checks:
        if on:
            check()
        else:
            with pytest.raises(UserInputError):
                check()
