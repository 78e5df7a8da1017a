"""Shared fixtures: small, fast runs written to a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import simcore


def run_cli(*args, check_rc=None, env=None, timeout=600):
    """Run the real ``simcore`` command in a subprocess; return the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "simcore.cli", *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture(scope="session")
def small_couzin_run(tmp_path_factory):
    """A short open-space Couzin run (N = 30, 60 steps, a frame every 10 steps)."""
    out = tmp_path_factory.mktemp("couzin") / "small.nc"
    simcore.run("couzin", preset="dynamic_parallel", steps=60, seed=3, write_every=10,
                overrides={"n": 30}, out=out)
    return out
