"""Shared fixtures: small, fast runs written to a temporary folder."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import netCDF4
import numpy as np
import pytest

# tests/plugins holds an engine packaged like a third-party one (a module and its
# .dist-info with a simcore.engines entry point): on the path, in this process and in the
# CLI subprocesses, it is installed. Done before simcore reads its registry.
PLUGINS = Path(__file__).resolve().parent / "plugins"
sys.path.insert(0, str(PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(PLUGINS)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

# XLA compiles the same small networks' programs in many tests (and in their CLI
# subprocesses): JAX's persistent compilation cache, in a folder of this session only,
# compiles each once (the scoremodels tests: ~30 % less time). Set before JAX is imported.
_JAX_CACHE = tempfile.mkdtemp(prefix="simcore-tests-jax-cache-")
atexit.register(shutil.rmtree, _JAX_CACHE, ignore_errors=True)
for _name, _value in (("JAX_COMPILATION_CACHE_DIR", _JAX_CACHE),
                      ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
                      ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")):
    os.environ.setdefault(_name, _value)

import simcore  # noqa: E402


def run_cli(*args, check_rc=None, env=None, timeout=600):
    """Run the real ``simcore`` command in a subprocess; return the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "simcore.cli", *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def run_cli_here(capsys, *args, check_rc=None):
    """The ``simcore`` command's parsing and error handling (:func:`simcore.cli._main`)
    called in this process; returned as :func:`run_cli` returns the real command (exit
    code, stdout, stderr), without starting an interpreter and importing simcore again
    (~1.5 s of CPU each). The error paths only: a netCDF handle that failed (a full
    disk) makes the real command end its process, so those cases use :func:`run_cli`."""
    from simcore import cli
    from simcore.io.trajectory import FAILED_HANDLES

    capsys.readouterr()
    argv = [str(a) for a in args]
    failed_before = len(FAILED_HANDLES)
    try:
        code = cli._main(argv)
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    out, err = capsys.readouterr()
    assert len(FAILED_HANDLES) == failed_before, \
        f"{argv} left failed netCDF handles: test it with run_cli"
    if check_rc is not None:
        assert code == check_rc, (code, out, err)
    return subprocess.CompletedProcess(["simcore", *argv], code, out, err)


def assert_one_paragraph(proc, *fragments) -> str:
    """Bad input refused as the README promises: exit status 2, no traceback, one
    paragraph (no blank line) that says ``error:``, and each of ``fragments`` in it.
    Whitespace is ignored in the comparison: textwrap breaks lines at spaces and hyphens.
    Returns the error text on one line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err and "error:" in err, err
    assert "\n\n" not in err, f"more than one paragraph:\n{err}"
    flat = "".join(err.split())
    for fragment in fragments:
        assert "".join(str(fragment).split()) in flat, (fragment, err)
    return " ".join(err.split())


def open_descriptors() -> set[str]:
    """This process's open file descriptors (Linux); the listing's own descriptor is the
    lowest free one, so compare after :func:`join_freeing_threads`."""
    return set(os.listdir("/proc/self/fd"))


def join_freeing_threads() -> None:
    """Wait for simcore's threads that close replaced files' descriptors after a run
    returns (``simcore.io.atomic.close_later``): until they finish, the set of open
    descriptors still changes."""
    import threading

    for thread in threading.enumerate():
        if thread.name == "simcore-free-blocks":
            thread.join(timeout=30)


def assert_same_file(a, b, ignore_attrs=("provenance",)):
    """All variables byte-identical and all global attributes equal but ``ignore_attrs``."""
    with netCDF4.Dataset(a) as x, netCDF4.Dataset(b) as y:
        assert x.file_format == y.file_format
        ax = {k: x.getncattr(k) for k in x.ncattrs() if k not in ignore_attrs}
        ay = {k: y.getncattr(k) for k in y.ncattrs() if k not in ignore_attrs}
        assert ax == ay
        assert set(x.variables) == set(y.variables)
        for name in x.variables:
            vx, vy = x[name][:], y[name][:]
            assert vx.dtype == vy.dtype and vx.shape == vy.shape, name
            assert np.asarray(vx).tobytes() == np.asarray(vy).tobytes(), name


@pytest.fixture(scope="session")
def small_couzin_run(tmp_path_factory):
    """A short open-space Couzin run (N = 30, 60 steps, a frame every 10 steps)."""
    out = tmp_path_factory.mktemp("couzin") / "small.nc"
    simcore.run("couzin", preset="dynamic_parallel", steps=60, seed=3, write_every=10,
                overrides={"n": 30}, out=out)
    return out


def _is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _tmpfs(tmp_path, name: str, options: str, size: str = "64k"):
    """Mount a tmpfs of ``size`` at tmp_path/name (root only; skipped elsewhere), unmount after."""
    if not _is_root():
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / name
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"{options}size={size}", "tmpfs", str(mnt)],
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
def small_fs(tmp_path):
    """An empty 1 MiB tmpfs (root only)."""
    yield from _tmpfs(tmp_path, "small", "", "1m")


@pytest.fixture
def read_only_fs(tmp_path):
    """A read-only 64 KiB tmpfs (root only)."""
    yield from _tmpfs(tmp_path, "ro", "ro,")


@pytest.fixture
def written_by_worker(monkeypatch):
    """A list that gets, at every ``Assembler.finish``, whether the writer's worker
    process wrote the file (False: the caller's process did)."""
    import simcore.io.assembler as assembler

    seen = []
    finish = assembler.Assembler.finish

    def finish_and_tell(self, *args, **kwargs):
        finish(self, *args, **kwargs)
        seen.append(self.by_worker)

    monkeypatch.setattr(assembler.Assembler, "finish", finish_and_tell)
    return seen


class ScriptedLoad:
    """Stands in for :class:`simcore._cpu.ForeignLoad`: each reading (``cores()``) is the
    next of ``readings`` (a list, consumed from the front, or an iterator); ``age()`` is
    ``age_seconds`` (default: a whole follower window)."""

    readings: list | None = None

    def __init__(self, cpus=None):
        self.age_seconds = 1.0

    def age(self):
        return self.age_seconds

    def cores(self):
        readings = type(self).readings
        return readings.pop(0) if isinstance(readings, list) else next(readings)


def script_foreign_load(monkeypatch, readings) -> type:
    """Other processes' load on a 2-core process, as ``readings`` (cores, one per reading
    of :class:`simcore._cpu.ForeignLoad`); the start probe's cache and the follower's
    open windows emptied."""
    import simcore._cpu as cpu

    scripted = type("Scripted", (ScriptedLoad,), {"readings": readings})
    monkeypatch.setattr(cpu, "ForeignLoad", scripted)
    monkeypatch.setattr(cpu, "usable_cores", lambda: [0, 1])
    monkeypatch.setattr(cpu, "_last_probe", {})
    monkeypatch.setattr(cpu, "_follow_windows", {})
    return scripted
