"""The benchmark scripts stay runnable: each parses its options (so its imports work
against today's simcore), and store.py measures one small case end to end. Speed is not
judged here (benchmarks/RESULTS.md records it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=BENCHMARKS, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_parses_its_options(script):
    proc = _run(script, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and "--" in proc.stdout


def test_store_benchmark_measures_a_case(tmp_path):
    """One round of the Couzin defaults: a row with its frames and shares, and the
    headline line that `make bench` collects."""
    summary = tmp_path / "summary.jsonl"
    proc = subprocess.run(
        [sys.executable, "store.py", "--quick", "--only", "couzin defaults"], cwd=BENCHMARKS,
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "SIMCORE_BENCH_SUMMARY": str(summary),
             "NUMBA_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("couzin defaults"))
    assert row.split(")")[1].split()[0] == "301"  # frames of 3000 steps written every 10
    assert "largest share of writing in a run" in proc.stdout
    assert '"benchmark": "store"' in summary.read_text()
