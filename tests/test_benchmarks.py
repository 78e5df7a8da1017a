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


_LOOP = """\
\tvmovups\t(%rax), %ymm0
.LBB0_1:
\tvaddps\t(%rdx,%rcx,4), %ymm0, %ymm1
\tvrsqrtps\t%ymm1, %ymm2
\tvfmadd231ps\t%ymm2, %ymm1, %ymm3
\taddq\t$8, %rcx
\tcmpq\t%rcx, %rsi
\tjne\t.LBB0_1
\tvzeroupper
\tretq
"""
# the same loop with a branch inside it: two paths, no straight body
_BRANCHING = _LOOP.replace("\tvfmadd231ps", "\ttestq\t%r8, %r8\n\tje\t.LBB0_2\n"
                           "\tvmulps\t%ymm2, %ymm2, %ymm2\n.LBB0_2:\n\tvfmadd231ps")


def test_roofline_reads_the_loop_body_and_models_it_where_it_can(tmp_path):
    """roofline.py's assembly reading on a hand-written loop: its body once around (the
    instructions from the loop's label to its back branch), none for a loop that
    branches inside; llvm-mca's cycles where the tool is on PATH, None without it."""
    code = f"""
import os, shutil, roofline
body = roofline.hot_loop_body({_LOOP!r})
assert body.splitlines() == [line.strip() for line in {_LOOP!r}.splitlines()[2:8]], body
assert roofline.hot_loop_body({_BRANCHING!r}) is None
assert roofline.hot_loop_paths({_BRANCHING!r}) == [(3, 0), (4, 0)]
if shutil.which("llvm-mca"):
    cycles, units = roofline.llvm_mca(body, "znver3")
    assert 1 <= units <= cycles < 30, (cycles, units)
os.environ["PATH"] = ""
assert roofline.llvm_mca(body, "znver3") is None
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=BENCHMARKS, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
