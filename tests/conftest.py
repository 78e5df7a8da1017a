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


def _is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _tmpfs(tmp_path, name: str, options: str):
    """Mount a 64 KiB tmpfs at tmp_path/name (root only; skipped elsewhere), unmount after."""
    if not _is_root():
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / name
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"{options}size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs, nearly full (root only)."""
    for mnt in _tmpfs(tmp_path, "tiny", ""):
        (mnt / "fill").write_bytes(b"\0" * 60 * 1024)
        yield mnt


@pytest.fixture
def read_only_fs(tmp_path):
    """A read-only 64 KiB tmpfs (root only)."""
    yield from _tmpfs(tmp_path, "ro", "ro,")
