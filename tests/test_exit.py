"""The console scripts end without the interpreter's teardown (simcore._exit) but finish
what a normal exit finishes first."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time
    from pathlib import Path
    from simcore._exit import run_and_exit

    folder = Path(sys.argv[1])

    def late_writer():
        time.sleep(0.2)
        (folder / "thread.txt").write_text("done")

    def main():
        atexit.register(lambda: (folder / "atexit.txt").write_text("done"))
        threading.Thread(target=late_writer).start()  # not a daemon: joined first
        sys.stdout.write("buffered, no newline")
        outcome = sys.argv[2]
        if outcome == "code":
            return 3
        if outcome == "none":
            return None
        raise SystemExit(outcome if outcome == "message" else int(outcome))

    run_and_exit(main)
""")


@pytest.mark.parametrize("outcome, code", [("code", 3), ("none", 0), ("2", 2),
                                           ("message", 1)])
def test_run_and_exit_finishes_threads_handlers_and_streams(tmp_path, outcome, code):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), outcome],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert (tmp_path / "thread.txt").read_text() == "done"
    assert (tmp_path / "atexit.txt").read_text() == "done"
    if outcome == "message":
        assert proc.stderr.strip() == "message"


def test_console_scripts_use_it():
    """The installed commands and ``python -m`` end through run_and_exit."""
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["simcore"] == "simcore.cli:command"
    assert scripts["scoremodels"] == "scoremodels.cli:command"
    proc = subprocess.run([sys.executable, "-m", "simcore.cli", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("simcore ")
    proc = subprocess.run([sys.executable, "-m", "scoremodels", "--bogus"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "usage" in proc.stderr
