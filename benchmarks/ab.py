"""Whole runs of this checkout against another commit's, side by side (A/B).

    .venv/bin/python benchmarks/ab.py --base REV [--repeats 3] [--threads 1]

Checks that a change (a refactor, a new store) costs no speed: the commit ``REV`` is
checked out into a temporary git worktree, and for every case below both trees run the
same seeded ``simcore.run`` in fresh processes (PYTHONPATH = the tree), alternating
A/B/A/B so that machine noise hits both alike; each process first runs the case once to
fill its Numba cache and warm up, then times the whole run (state, kernel, frame log,
checkpoints, assembly). Reported: the best wall time of each and the ratio base / this
(> 1: this checkout is faster). The two trees must give the same bits; the script checks
the coordinates' digest of both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import _common
from _common import log, machine_header, table

ROOT = Path(__file__).resolve().parents[1]

# (engine, preset, overrides, steps, write_every): states users simulate, at sizes that
# take about a second per run on one core
CASES = [
    ("couzin", "dewi_highly_parallel", {}, 4000, None),
    ("couzin", "torus", {"n": 1000}, 1500, None),
    ("abp", "mips", {"n": 4096}, 3000, 300),
    ("linear", "rotational_ou", {"n": 100000}, 400, 40),
    ("harddisc", "hydro", {"n": 10000, "t_end": 300.0}, None, None),
]

TIMER = r"""
import hashlib, json, sys, tempfile, time
from pathlib import Path
import numba
numba.set_num_threads(int(sys.argv[2]))
import netCDF4, numpy as np
import simcore
name, preset, over, steps, every = json.loads(sys.argv[1])
kw = dict(preset=preset, overrides=over, seed=1, quiet=True, threads=int(sys.argv[2]))
if steps is not None:
    kw["steps"] = steps
if every is not None:
    kw["write_every"] = every
folder = Path(tempfile.mkdtemp())
simcore.run(name, out=folder / "warm.nc", **kw)
t0 = time.perf_counter()
out = simcore.run(name, out=folder / "run.nc", **kw)
seconds = time.perf_counter() - t0
with netCDF4.Dataset(out) as nc:
    digest = hashlib.sha256(np.ascontiguousarray(nc["coordinates"][:]).tobytes()).hexdigest()
print(json.dumps({"seconds": seconds, "digest": digest[:16]}))
"""


def time_case(tree: Path, case, threads: int) -> dict:
    """One fresh process of ``tree`` running ``case`` (warm-up, then the timed run)."""
    proc = subprocess.run([sys.executable, "-c", TIMER, json.dumps(case[:5]), str(threads)],
                          capture_output=True, text=True, cwd=tree,
                          env={**_env(), "PYTHONPATH": str(tree)})
    if proc.returncode != 0:
        raise RuntimeError(f"{case[0]} in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=3, help="A/B pairs per case")
    parser.add_argument("--threads", type=int, default=1, help="Numba threads of both")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds to wait for a quiet machine before each case")
    args = parser.parse_args(argv)
    rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    print(machine_header(f"simcore A/B whole runs: this checkout ({head}, working tree) "
                         f"against {rev} (benchmarks/ab.py)"))
    print(f"threads: {args.threads}; best of {args.repeats} alternating runs per tree\n")
    with tempfile.TemporaryDirectory(prefix="simcore-ab-") as tmp:
        base = Path(tmp) / rev
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base), rev],
                       cwd=ROOT, check=True)
        try:
            rows = []
            for case in CASES:
                _common.wait_quiet(args.quiet_wait)
                label = f"{case[0]} {case[1]} {case[2] or ''}".strip()
                log(f"  {label} ...")
                best = {"base": None, "this": None}
                digests = set()
                for _ in range(args.repeats):
                    for key, tree in (("base", base), ("this", ROOT)):
                        r = time_case(tree, case, args.threads)
                        digests.add(r["digest"])
                        if best[key] is None or r["seconds"] < best[key]:
                            best[key] = r["seconds"]
                rows.append([label, f"{best['base']:.3f}", f"{best['this']:.3f}",
                             f"{best['base'] / best['this']:.3f}",
                             "yes" if len(digests) == 1 else "NO"])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    print(table(["case", f"{rev} s", f"{head} s", "ratio (>1: faster now)", "same bits"],
                rows))
    print(f"\n{_common.load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
