"""Progress reports: plain lines in logs, at the requested interval, with honest rates."""

import io

import simcore
from simcore._progress import LogProgress, progress


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
    steps = [line for line in err if line.startswith("harddisc: ")]
    assert [s.split(" (")[0] for s in steps] == [
        "harddisc: 1/3 frame interval", "harddisc: 2/3 frame interval",
        "harddisc: 3/3 frame interval"]
