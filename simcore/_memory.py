"""Memory checked up front: estimate what a run, an analysis or an inference needs and
refuse (exit 2, with the estimate) when it exceeds the memory available, instead of a
MemoryError after minutes with a ``.part`` left behind.

* :func:`available_bytes` — ``MemAvailable`` of /proc/meminfo (fallback: free pages from
  ``sysconf``), capped by the cgroup limit of this process (v2 ``memory.max`` minus
  ``memory.current``, or v1 ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``);
* :func:`check_memory` — the refusal itself; ``SIMCORE_SKIP_MEMORY_CHECK=1`` skips it;
* estimators: :func:`run_bytes` (state, work arrays and frame buffers of each engine),
  :func:`analysis_bytes` (``simcore analyze`` of a file), :func:`epr_bytes`
  (``scoremodels epr``), and :func:`check_run_memory` for the driver.

The per-particle constants are the engines' own arrays (each engine's ``run_bytes`` and
``analysis_bytes``);
they were checked against the peak resident memory of real runs: the estimate of the
arrays over the measured rise of peak RSS (after the imports and a warm-up run) was 1.22
for linear (n = 1e6, d = 2), 1.39 for abp (WCA, n = 2e5), 1.28 for harddisc (n = 2e5) and
1.14 for couzin (periodic, n = 1e5); tests/test_memory.py repeats the check at a small
size (within a factor 2).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from simcore._env import env_flag
from simcore._errors import UserInputError

SKIP_ENV = "SIMCORE_SKIP_MEMORY_CHECK"
MiB = 2 ** 20
# numba/LLVM compiling the kernels on a cold cache, HDF5 and netCDF buffers: a fixed
# allowance on top of the arrays (measured: 60-150 MiB of peak RSS above the imports)
FIXED_BYTES = 128 * MiB


# ----------------------------------------------------------------------------- available
def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text in ("", "max"):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_dirs(root: Path, proc_cgroup: Path) -> list[tuple[Path, str]]:
    """(directory, version) of this process's cgroup and its ancestors (v2), or the v1
    memory controller's directories."""
    out: list[tuple[Path, str]] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, rel = parts
        rel = rel.lstrip("/")
        if hid == "0" and controllers == "":  # cgroup v2
            here = root / rel if rel else root
            while True:
                out.append((here, "v2"))
                if here == root or root not in here.parents:
                    break
                here = here.parent
        elif "memory" in controllers.split(","):  # cgroup v1
            base = root / "memory"
            out.append((base / rel if rel else base, "v1"))
            out.append((base, "v1"))
    if not out:  # no /proc/self/cgroup: the root files, whichever exist
        out = [(root, "v2"), (root / "memory", "v1")]
    return out


def cgroup_remaining(root: str | Path = "/sys/fs/cgroup",
                     proc_cgroup: str | Path = "/proc/self/cgroup") -> int | None:
    """Bytes this process's cgroup (and its ancestors) may still allocate, or None when no
    memory limit is set."""
    best = None
    for directory, version in _cgroup_dirs(Path(root), Path(proc_cgroup)):
        if version == "v2":
            limit = _read_int(directory / "memory.max")
            used = _read_int(directory / "memory.current")
        else:
            limit = _read_int(directory / "memory.limit_in_bytes")
            used = _read_int(directory / "memory.usage_in_bytes")
            if limit is not None and limit >= 1 << 60:  # v1 "no limit" is a huge number
                limit = None
        if limit is None:
            continue
        left = max(0, limit - (used or 0))
        best = left if best is None else min(best, left)
    return best


def available_bytes() -> int | None:
    """Memory a new allocation can use now: the kernel's MemAvailable (else free pages),
    capped by the cgroup limit (v2 or v1) if one is set. None when nothing is known."""
    avail = _meminfo_available()
    if avail is None:
        avail = _sysconf_available()
    limit = cgroup_remaining()
    if limit is not None:
        avail = limit if avail is None else min(avail, limit)
    return avail


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style text."""
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_memory(needed_bytes: float, what: str, advice: str | Callable[[int], str]) -> None:
    """Raise :class:`UserInputError` when ``needed_bytes`` exceed :func:`available_bytes`.

    ``what`` names the job ("The run", "Analysing run.nc"), ``advice`` says how to need
    less (or makes that text from the available bytes, only when it is needed).
    Skipped when the environment variable ``SIMCORE_SKIP_MEMORY_CHECK`` is on (``1``,
    ``true`` or ``yes``: :func:`simcore._env.env_flag`) or the available memory cannot be read.
    """
    if env_flag(SKIP_ENV):
        return
    avail = available_bytes()  # ~0.5 ms (/proc and cgroup files): read once a check
    if avail is None or needed_bytes <= avail:
        return
    if callable(advice):
        advice = advice(avail)
    raise UserInputError(
        f"{what} needs about {format_bytes(needed_bytes)} of memory (estimated), but only "
        f"{format_bytes(avail)} is available on this machine now (free memory, or the "
        f"limit of this job's cgroup). {advice} If the estimate is wrong for your case, set "
        f"{SKIP_ENV}=1 to run anyway.")


# ----------------------------------------------------------------------------- runs
def _writer_bytes(n: int, per_atom_floats: int, itemsize: int, n_frames: int) -> int:
    """The frame log's buffer (at most 32 MiB of frames, at least one frame) and the
    NetCDF assembly's block of frames (at most 16 MiB, at least one) with its compression
    buffers, in the run's process or its worker (``per_atom_floats`` numbers per particle
    in a frame)."""
    from simcore.io.framelog import BUFFER_BYTES

    frame = n * per_atom_floats * itemsize
    total = frame * max(1, n_frames)
    return max(frame, min(BUFFER_BYTES, total)) + 3 * max(frame, min(16 * MiB, total))


#: bytes a run holds for each frame it writes, whatever its size: the frame log's CRC-32
#: (an array grown by doubling), the copies a checkpoint and the file's assembly take,
#: and the worker's (measured: 8 bytes a frame of peak RSS in the run's process between
#: 2e5 and 2e6 frames of a 2-agent Couzin run)
CHECKSUM_BYTES_PER_FRAME = 16


def run_bytes(model_name: str, params, settings) -> int:
    """Estimated peak bytes of a run: the engine's state and work arrays, one frame's
    variables and the writer's buffers for them, every frame's checksums
    (:data:`CHECKSUM_BYTES_PER_FRAME`), plus :data:`FIXED_BYTES`."""
    from simcore.driver import frame_steps
    from simcore.models import get_engine

    estimate = get_engine(model_name).run_bytes
    if estimate is None:  # an engine without an estimate is not checked
        return FIXED_BYTES
    arrays, floats = estimate(params)
    itemsize = 8 if getattr(settings, "precision", "float32") == "float64" else 4
    n_frames = len(frame_steps(settings.steps, settings.write_every))
    return int(arrays + _writer_bytes(params.n, floats, itemsize, n_frames)
               + CHECKSUM_BYTES_PER_FRAME * n_frames + FIXED_BYTES)


def check_run_memory(model_name: str, params, settings) -> None:
    """Refuse a run whose :func:`run_bytes` exceed the available memory (UserInputError,
    exit 2, before any file is created). For the driver, before it creates the output."""
    from simcore.driver import frame_steps

    need = run_bytes(model_name, params, settings)
    n_frames = len(frame_steps(settings.steps, settings.write_every))
    per_frame = CHECKSUM_BYTES_PER_FRAME * n_frames
    per = max(1.0, (need - FIXED_BYTES - per_frame) / max(1, params.n))

    def advice(avail: int) -> str:
        if per_frame > (need - FIXED_BYTES) / 2:  # the frame count, not n, is the problem
            fit = int(max(0, avail - need + per_frame) / CHECKSUM_BYTES_PER_FRAME)
            return (f"Write fewer frames (a larger --write-every or fewer steps; about "
                    f"{fit:,} frames fit now against {n_frames:,}), or run on a node with "
                    "more memory.")
        fit = int(max(0, avail - FIXED_BYTES - per_frame) / per)
        return (f"Use fewer particles (about n <= {fit:,} fit now), or run on a node with "
                "more memory (e.g. a larger --memory request of the batch job).")

    check_memory(need, f"The {model_name} run with n = {params.n}", advice)


# ----------------------------------------------------------------------------- analyses
def analysis_bytes(model_name: str, n_atoms: int, n_frames: int, params=None,
                   extra: dict | None = None) -> int:
    """Estimated peak bytes of ``simcore analyze`` of a trajectory with ``n_atoms`` and
    ``n_frames``: what the engine's default analysis holds at once (its ``analysis_bytes``;
    100 bytes per particle and frame for an engine without an estimate)."""
    from simcore.models import get_engine

    n, t = int(n_atoms), int(n_frames)
    estimate = get_engine(model_name).analysis_bytes
    if estimate is None:
        return 100 * n * max(1, t) + FIXED_BYTES
    return int(estimate(n, t, params)) + FIXED_BYTES


def check_analysis_memory(ds, source: str) -> None:
    """:func:`check_memory` for ``simcore analyze`` of the open trajectory ``ds``."""
    acc = ds.simcore
    frames = ds.sizes.get("time", ds.sizes.get("frame", 1))
    need = analysis_bytes(acc.model, ds.sizes["atom"], frames, acc.params)
    check_memory(need, f"Analysing {source} ({acc.model}, {ds.sizes['atom']} particles, "
                 f"{frames} frames)",
                 "Analyse a subset in Python (ds.isel(time=slice(...)) or fewer particles), "
                 "or run on a node with more memory.")


def epr_bytes(n_atoms: int, per_frame_bytes: int, frames_at_once: int, state_dim: int,
              neighbours: int, width: int, depth: int, batch_particles: int) -> int:
    """Estimated peak bytes of ``scoremodels epr``: the frames read at once (each
    ``per_frame_bytes``: raw variables and network samples), one frame's per-particle
    scores, Jacobians and flows (float64), and one batch of ``batch_particles`` through the
    network with its Jacobian: activations of ``depth`` layers of ``width`` (float32) over
    ``neighbours`` + 1 tokens, kept for the ``state_dim`` + 1 forward/backward passes
    (a factor 8 for the attention and feed-forward intermediates)."""
    dim = max(1, state_dim)
    frames = (max(1, frames_at_once) + 1) * per_frame_bytes
    per_particle = n_atoms * 8 * (dim * dim + 6 * dim + 4)
    batch = batch_particles * (max(1, neighbours) + 1) * max(1, width) * max(1, depth) * 4 \
        * 8 * (dim + 1)
    return int(frames + per_particle + batch + FIXED_BYTES)


__all__ = ["available_bytes", "cgroup_remaining", "check_memory", "run_bytes",
           "check_run_memory", "analysis_bytes", "check_analysis_memory", "epr_bytes",
           "format_bytes", "SKIP_ENV", "FIXED_BYTES"]
