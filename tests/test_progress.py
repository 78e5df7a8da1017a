"""Progress reports: plain lines in logs, at the requested interval, with honest rates."""

import io

import simcore
from simcore._progress import LogProgress, progress, watch_compiles


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_log_lines_at_the_interval_with_rate_and_time_left():
    clock, out = FakeClock(), io.StringIO()
    # a resumed loop: 200 of 1000 steps were done before this process started
    bar = LogProgress(1000, desc="couzin", unit="step", initial=200, interval=60.0,
                      stream=out, clock=clock)
    for _ in range(12):  # 10 steps per 5 s: a report every 60 s
        clock.t += 5.0
        bar.update(10)
    lines = out.getvalue().splitlines()
    assert lines == ["couzin: 320/1000 step (32.0 %), 2 step/s, elapsed 0:01:00, left 0:05:40"]
    bar.set_postfix(loss="0.5")
    clock.t += 60.0
    bar.update(0)
    assert out.getvalue().splitlines()[-1].endswith("elapsed 0:02:00, left 0:11:20 [loss=0.5]")


def test_quiet_and_terminal_choices():
    out = io.StringIO()  # not a terminal
    assert isinstance(progress(5, desc="x", unit="step", stream=out), LogProgress)
    silent = progress(5, desc="x", unit="step", quiet=True, stream=out)
    silent.update(5)
    assert out.getvalue() == ""


def test_a_malformed_interval_falls_back_to_the_default(monkeypatch):
    monkeypatch.setenv("SIMCORE_PROGRESS_SECONDS", "often")
    bar = progress(5, desc="x", unit="step", stream=io.StringIO())
    assert bar.interval == 60.0


def test_a_run_logs_progress_lines_when_stderr_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIMCORE_PROGRESS_SECONDS", "0")
    simcore.run("harddisc", overrides={"n": 30, "phi": 0.05, "t_end": 3.0, "frame_dt": 1.0},
                out=tmp_path / "hd.nc", quiet=False)
    err = capsys.readouterr().err.splitlines()
    steps = [line for line in err if line.startswith("harddisc: ") and "interval" in line]
    assert [s.split(" (")[0] for s in steps] == [
        "harddisc: 1/3 frame interval", "harddisc: 2/3 frame interval",
        "harddisc: 3/3 frame interval"]


def test_the_rate_leaves_out_the_seconds_spent_compiling():
    clock, out = FakeClock(), io.StringIO()
    compiling = [8.0]  # before the loop (frame 0): not in this report's time
    bar = LogProgress(1000, desc="abp", unit="step", interval=60.0, stream=out, clock=clock,
                      paused=lambda: compiling[0])
    compiling[0] = 88.0  # the first chunk of 10 steps compiled the kernels for 80 s
    clock.t += 81.0
    bar.update(10)
    assert out.getvalue().splitlines() == [
        "abp: 10/1000 step (1.0 %), 10 step/s, elapsed 0:01:21, left 0:01:39"]


def test_the_compile_watch_counts_a_compilation_as_under_way_when_it_says_so():
    """The announcement comes with ``compiling`` already true: a stop signal that the
    announcement prompts must find the compilation under way (driver: abandoned)."""
    import numba

    seen = []
    with watch_compiles(lambda: seen.append(watch.compiling)) as watch:
        assert not watch.compiling
        numba.njit(lambda x: x + 1)(1)  # a new function: compiled, not loaded
    assert seen == [True] and not watch.compiling and watch() > 0


_RUN_LINEAR = ("import simcore; simcore.run('linear', steps=20, write_every=10, out='lin.nc', "
               "overwrite=True, quiet=False)")


def test_a_run_says_when_it_compiles_and_not_when_the_cache_serves_it(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"),
           "SIMCORE_PROGRESS_SECONDS": "0"}
    said = []
    for _ in range(2):  # a cold cache, then the same cache warm
        err = subprocess.run([sys.executable, "-c", _RUN_LINEAR], cwd=tmp_path, env=env,
                             capture_output=True, text=True, check=True).stderr
        said.append([line for line in err.splitlines() if "compiling" in line])
    # the announcement, then the run's last line with the compilation apart
    assert len(said[0]) == 2 and said[0][0].startswith("linear: compiling the engine's kernels")
    assert said[0][1].startswith("Wrote lin.nc") and "; compiling the kernels" in said[0][1]
    assert said[1] == []
