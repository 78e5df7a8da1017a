"""The chunked run loop shared by every engine: advance, write, checkpoint, progress, resume.

The driver knows no physics. It asks the model module (see :mod:`simcore.models`) for an
initial state, advances it ``write_every`` steps at a time inside the Numba kernel and
appends a frame after each chunk (engines with ``advance_frames``: many chunks per kernel
call, ~25 ms of them, their frames appended together).

Files, all beside ``OUT``:

* ``OUT.lock`` — held while the run writes (:mod:`simcore.io.lock`): one writer per output;
* ``OUT.part`` — the crash-safe frame log (:mod:`simcore.io.framelog`), append-only;
* ``OUT.ckpt`` — the checkpoint: the state after the last counted frame and the checksum
  of every frame (:mod:`simcore.io.checkpoint`), written every ``checkpoint_every``
  frames (unless that would cost more than 1/100 of the run: at the default, none in a
  run's first 0.5 s), every ``checkpoint_seconds`` of wall time, on SIGINT/SIGTERM, and
  before the assembly (by the same 1/100 rule);
* ``OUT`` — the NetCDF trajectory, written as ``OUT.tmp`` from the frame log while the run
  goes on (whole chunks, by a worker process: :mod:`simcore.io.assembler`), completed when
  the run is, fsynced and renamed; then the other files go.

``resume=True`` verifies the checkpointed frames and continues from the checkpoint;
because the kernels' noise is a pure function of (seed, step, particle), the resumed file
equals an uninterrupted run bit for bit (all variables and all attributes but
``provenance``, which records the resumption).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simcore import __version__
from simcore._cpu import LoadFollower, idle_threads, release_spinning_workers, usable_cores
from simcore._errors import UserInputError
from simcore._interrupt import AbandonedForStop, RunInterrupted, stop_requests
from simcore._progress import progress, watch_compiles
from simcore.config import RunSettings, run_parameters_json
from simcore.io.checkpoint import (check_state_like, load_checkpoint, save_checkpoint)
from simcore.io.atomic import close_later, fsync_dir, replace, unlink
from simcore.io.framelog import MAX_RECORD_BYTES, FrameLogWriter, record_size
from simcore.io.lock import OutputLock
from simcore.io.outputs import (check_extend, check_folder, check_output, check_space, side_paths,
                                unused_name, write_error)
from simcore.io.provenance import provenance
from simcore.io.trajectory import (_frames_per_chunk, assemble, frame_schema, read_attrs,
                                   state_layout)
from simcore.models import get_engine


_COST_RATIO = 100  # frame-count checkpoints take at most ~1/100 of a run's wall time
# What a checkpoint costs before the run has timed one, seconds (4-11 ms measured on the
# development VMs: fsyncs, the state's .npz). With the ratio above, a run left at the
# default checkpoint_every writes its first checkpoint once it has lasted 0.5 s, so a
# sub-second run writes none (a crash loses < 0.5 s of work); an explicit checkpoint_every
# is honoured from the run's first frames.
_FIRST_CHECKPOINT_COST = 0.005
# An engine with ``advance_frames`` advances about this many seconds of frames per kernel
# call (the driver's Python per frame is then amortised: ~40 us a frame for Couzin); a stop
# signal waits for the call. A call makes at most _CALL_BYTES of frame-log records.
_CALL_SECONDS = 0.025
_CALL_BYTES = 2**23
# A frame interval that takes longer than twice this many seconds is advanced in pieces
# of about this length (``advance``'s contract lets a run be cut at any step with the same
# bits), so that the progress bar moves, the thread count follows other processes' load
# and a stop signal is answered within a long interval (the checkpoint then holds the
# state at the interval's start); a run's first interval, not yet timed, in pieces from
# one step up
_PIECE_SECONDS = 0.25
# A stop signal is answered between pieces only in intervals longer than this (or not yet
# timed): the copy of the state at their start then costs under ~1 % (ABP at N = 10^6:
# ~70 MB); shorter intervals finish first
_STOP_WITHIN_SECONDS = 2.0


class FrameSteps(Sequence):
    """The steps at which a run writes its frames, 0, k, 2k, ... and ``steps`` itself,
    computed on demand: a list of them took ~36 bytes a frame, so a run asking for 10⁹
    frames was killed for memory before its first step. Indexing (negative indices
    too) and slices (lists) as for the list; ``==`` with a list compares the steps."""

    __slots__ = ("steps", "write_every", "_regular")

    def __init__(self, steps: int, write_every: int):
        self.steps, self.write_every = int(steps), int(write_every)
        self._regular = self.steps // self.write_every + 1  # 0, k, ..., the last multiple

    def __len__(self) -> int:
        return self._regular + (self.steps % self.write_every != 0)

    def __getitem__(self, index):
        if isinstance(index, slice):
            k, regular, last = self.write_every, self._regular, self.steps
            return [i * k if i < regular else last for i in range(*index.indices(len(self)))]
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError(f"frame {index} of a run of {n} frames")
        return i * self.write_every if i < self._regular else self.steps

    def __eq__(self, other) -> bool:
        if isinstance(other, FrameSteps):
            # 0, k, ..., and a last step: the length, k (or the one step after 0) and the
            # last step fix the sequence
            return len(self) == len(other) and (len(self) < 2 or (
                self[1] == other[1] and self[-1] == other[-1]))
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # equal to lists of the same steps, which have no hash either

    def starts(self, other: "FrameSteps") -> bool:
        """True if ``other``'s steps are this run's first frames (an extension's check)."""
        n = len(other)
        if n > len(self):
            return False
        if other.write_every != self.write_every:  # not an extension's case: compare all
            return all(self[i] == other[i] for i in range(n))
        # the same k: other's frames before its last are multiples of k, as this run's are
        return self[n - 1] == other[n - 1]

    def __repr__(self) -> str:
        return f"FrameSteps(steps={self.steps}, write_every={self.write_every})"


def frame_steps(steps: int, write_every: int) -> FrameSteps:
    """Steps at which frames are written: 0, k, 2k, ... and ``steps`` itself."""
    return FrameSteps(steps, write_every)


def chunks_per_call(marks: Sequence[int], f: int, chunk_seconds: float | None) -> int:
    """Frame intervals that one ``advance_frames`` call makes from frame ``f`` of a run
    with frames at steps ``marks``: about :data:`_CALL_SECONDS` of them at ``chunk_seconds``
    each (one until a chunk is timed), all of the same length."""
    if chunk_seconds is None:
        return 1
    count = max(1, int(_CALL_SECONDS / max(chunk_seconds, 1e-9)))
    regular = len(marks) if marks[-1] - marks[-2] == marks[1] - marks[0] else len(marks) - 1
    return min(count, max(1, regular - f))


def _long_interval(chunk_seconds: float | None) -> bool:
    """Whether a frame interval that took ``chunk_seconds`` (None: not yet timed) is
    advanced in pieces (:data:`_PIECE_SECONDS`)."""
    return chunk_seconds is None or chunk_seconds > 2 * _PIECE_SECONDS


def _chunks_in(states: dict) -> int:
    """The chunks of stacked states (``advance_frames``): every array's leading length."""
    return len(next(iter(states.values())))


def run_model(
    model_name: str,
    params,
    settings: RunSettings,
    out: str | Path,
    *,
    preset: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    extend: bool = False,
    threads: int | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    stop_after_frames: int | None = None,
) -> Path:
    """Run ``model_name`` with validated ``params`` and ``settings``; return the output path.

    Raises :class:`UserInputError` for bad input (exit 2 in the CLI) and
    :class:`~simcore._interrupt.RunInterrupted` (a KeyboardInterrupt) after checkpointing
    on SIGINT/SIGTERM. ``stop_after_frames`` (or the environment variable
    ``SIMCORE_INTERRUPT_AFTER_FRAMES``) acts like a SIGINT once that many frames are
    written; it exists to test ``resume``.

    ``extend=True`` continues the finished run in ``out`` (same parameters but a larger
    ``steps``, or ``t_end`` for the hard discs) from the final state stored in it; the
    result equals the longer run made from the start, bit for bit. ``out`` is replaced
    only when the extension is complete (an interrupted extension resumes with ``extend``
    or ``resume``).
    """
    if stop_after_frames is None and os.environ.get("SIMCORE_INTERRUPT_AFTER_FRAMES"):
        stop_after_frames = int(os.environ["SIMCORE_INTERRUPT_AFTER_FRAMES"])
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise UserInputError(f"The output must be a file path such as 'run.nc' (got {out!r}).")
    model = get_engine(model_name)
    out = Path(out)
    check_folder(out)  # before side_paths: "." has no name to put a suffix on
    paths = side_paths(out)
    frames_bytes = _frames_bytes(model, params, settings)
    if settings.format == "netcdf4":
        from simcore.io.assembler import prestart

        prestart(frames_bytes)  # its imports overlap our set-up
    log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    run_json = run_parameters_json(model_name, params, settings, preset)
    with OutputLock(paths["lock"], f"The output {out}",
                    lambda msg: print(msg, file=sys.stderr)):
        if extend and overwrite:
            raise UserInputError("--extend continues an existing output; it cannot be "
                                 "combined with --overwrite.")
        if resume and overwrite:  # overwrite would win and discard the checkpointed frames
            raise UserInputError("--resume continues an interrupted run and --overwrite starts "
                                 "over, discarding its checkpointed frames; pass one of them.")
        action = (check_extend(out, model, run_json) if extend
                  else check_output(out, overwrite, resume, run_json))
        if action == "done":
            for name in ("part", "ckpt", "tmp"):  # left by a kill after the final rename
                paths[name].unlink(missing_ok=True)
            log(f"{out} is already complete; nothing to resume.")
            return out
        if resume and action == "fresh" and paths["part"].exists():
            log(f"{paths['part'].name} has no checkpoint (the run stopped before its first "
                "one), so no frame of it can be trusted: starting over.")
        if action != "resume":  # a resumed run passed the check when it started
            from simcore._memory import check_run_memory

            check_run_memory(model_name, params, settings)
        logged = paths["part"].stat().st_size if action == "resume" else 0
        check_space(out, max(0, _log_bytes(frames_bytes, settings) - logged), frames_bytes)
        for message in model.warnings(params):
            warnings.warn(message, stacklevel=2)
        if threads is not None:
            _set_threads(threads)
        elif model.threaded:
            _set_idle_threads(log)  # the writer's worker, importing meanwhile, is ours
        _Run(model, model_name, params, settings, out, paths, run_json, preset, log, quiet,
             argv, stop_after_frames, follow_load=threads is None).execute(action)
    return out


def _frames_bytes(model, params, settings) -> int:
    """The bytes of a run's frames in its frame log (what its NetCDF file holds,
    uncompressed). Raises :class:`UserInputError` for frames too large for the log."""
    def record(n: int) -> int:
        schema = frame_schema(n, {}, model.extra_variables(params), settings.precision,
                              velocities=model.has_velocities)
        return record_size([tuple(f) for f in schema["fields"]])

    size = record(params.n)
    if size > MAX_RECORD_BYTES:
        per_particle = (size - record(1)) / max(1, params.n - 1)
        most = int((MAX_RECORD_BYTES - record(1)) / per_particle)
        raise UserInputError(
            f"One frame of this run holds {size / 2**30:.1f} GiB (n = {params.n:,}); "
            f"simcore's frame log stores frames of at most 2 GiB, so n <= {most:,} for this "
            "model and its settings. Use fewer particles.")
    return len(frame_steps(settings.steps, settings.write_every)) * size


def _log_bytes(frames_bytes: int, settings) -> int:
    """The most a run's frame log and checkpoint occupy on disk beside its output, for
    ``frames_bytes`` of frames (:func:`_frames_bytes`): the frames, the log's header (the
    schema and attributes: 4 KiB for the defaults) and the checkpoint (the state, 0.7-2x a
    frame's bytes for the defaults and large runs of every model, 4 bytes of checksum a
    frame and ~5 KiB), twice while a new checkpoint replaces the old."""
    n_frames = len(frame_steps(settings.steps, settings.write_every))
    checkpoint = 2 * (frames_bytes // n_frames) + 4 * n_frames + 8 * 2**10
    return frames_bytes + 16 * 2**10 + 2 * checkpoint


def _kernel_threads(model, params, settings, most: int) -> int:
    """The threads a run's kernel computes on with ``most`` threads available (the model's
    ``kernel_threads``; 1 for serial engines)."""
    if model.kernel_threads is None:
        return 1
    return model.kernel_threads(params, settings.write_every, most)


def _writer_beside_run(kernel_threads: int) -> bool:
    """Whether the writer's worker process assembles the NetCDF file while the run computes
    (else after the last step): only while a kernel of ``kernel_threads`` threads at most
    leaves one of this process's cores idle. On cores the kernel's threads fill, the
    worker's compression and wake-ups stall them (a threaded step waits for its slowest
    thread), which costs more than writing the file after the last step: whole runs on 2
    threads of 2 cores, ABP (N = 4096, 1001 frames, 76 MB) 3.53 s with the worker beside
    the run against 3.15 s after it (benchmarks/RESULTS.md)."""
    return kernel_threads < len(usable_cores())


def run_summary(out: Path, n_frames: int, steps: int, unit: str, wall: float,
                engine: float, compiling: float, n: int | None = None) -> str:
    """The line a run ends with: where its ``wall`` seconds went. ``steps``: advanced in
    this execution; ``engine``: seconds inside the engine's calls (the initial state,
    advancing, each frame's variables; in a process's first run also loading the compiled
    kernels from Numba's cache), of which ``compiling`` compiled kernels (a cold cache).
    Everything else (the frame log, the NetCDF file, checkpoints, set-up) is given as a
    share of the run without compiling: what ``benchmarks/store.py`` calls in-run. ``n``:
    the particles (agents), if the model has a count."""
    computing = max(0.0, engine - compiling)
    rest = max(0.0, wall - engine)
    rate = (f", {steps / computing:,.0f} {unit}s/s" + (f" at N = {n}" if n else "")
            if steps and computing > 0 else "")
    compiled = f"; compiling the kernels {compiling:.1f} s (once)" if compiling >= 0.05 else ""
    return (f"Wrote {out} ({n_frames} frames, {steps} {unit}s) in {wall:.2f} s: computing "
            f"{computing:.2f} s{rate}; writing and set-up {rest:.2f} s "
            f"({rest / max(wall - compiling, 1e-9):.0%}){compiled}.")


def _signal_name(signum: int) -> str:
    return {2: "SIGINT", 15: "SIGTERM"}.get(signum, f"signal {signum}")


def _drop_log(frames, part: Path) -> None:
    """Remove a finished run's frame log: its name now, its blocks when its descriptor is
    closed, which a thread does (freeing a large file's blocks can be slow: 0.35 s for
    330 MB on ext4 mounted with ``discard``, which trims them at once)."""
    if os.name != "posix":  # an open file cannot be unlinked there
        frames.close()
        part.unlink(missing_ok=True)
        return
    part.unlink(missing_ok=True)
    close_later(frames.close)


class _Run:
    """One execution of a run: start or resume, the frame loop, checkpoints, assembly."""

    def __init__(self, model, model_name, params, settings, out, paths, run_json, preset,
                 log, quiet, argv, stop_after_frames, follow_load=False):
        self.model, self.model_name, self.params, self.settings = model, model_name, params, \
            settings
        # A run on the default thread count follows other processes' load up to Numba's
        # maximum (it may start lower: cores busy at its start). The kernel's path (threaded
        # or serial) is the one for that maximum and fixed for the run: the thread count
        # changes between calls, the compiled path does not.
        import numba

        self.most_threads = (numba.config.NUMBA_NUM_THREADS if follow_load
                             else numba.get_num_threads())
        self.most_kernel_threads = _kernel_threads(model, params, settings, self.most_threads)
        self.kernel_args = ({} if model.kernel_threads is None
                            else {"parallel": self.most_kernel_threads > 1})
        self.follow_load = follow_load and self.most_kernel_threads > 1
        # whether a frame interval may be advanced in pieces (the same bits as one call)
        self.cuts_anywhere = model.cuts_anywhere is None or model.cuts_anywhere(params)
        self.out, self.paths, self.run_json, self.preset = out, paths, run_json, preset
        self.log, self.quiet, self.argv = log, quiet, argv
        self.stop_after_frames = stop_after_frames
        self.marks = frame_steps(settings.steps, settings.write_every)
        self.dt = model.time_per_step(params)
        self.frames = None  # the FrameLogWriter
        self.assembler = None  # writes OUT.tmp from the log while the run goes on
        self.fed = 0  # frames handed to the assembler
        self.feeding = False  # whether it gets them during the run (see _start_assembler)
        # wall seconds inside the engine's calls (_engine_call: the summary's "computing")
        self.engine_seconds = 0.0
        self.state = None
        self.provenance = None
        self.last_checkpoint = time.monotonic()
        self.checkpointed = 0  # frames the checkpoint on disk covers
        # seconds the last checkpoint took (before the first: the prior, see above)
        self.checkpoint_cost = (0.0 if "checkpoint_every" in settings.model_fields_set
                                else _FIRST_CHECKPOINT_COST)

    # ------------------------------------------------------------------ start / resume
    def _start(self) -> None:
        for name in ("part", "ckpt", "tmp"):
            self.paths[name].unlink(missing_ok=True)
        from simcore.restart import initial_state

        # the engine's work (hard discs: equilibrating)
        self.state = self._engine_call(initial_state, self.model_name, self.model, self.params,
                                       self.settings.seed, self.settings.init_from)
        self.provenance = provenance(self.argv)
        self._create_log()
        self._append(0)
        self._start_assembler()  # fed frame 0: the worker creates OUT.tmp during the first chunk

    def _extend(self) -> None:
        """Start the frame log from the finished file's frames and final state."""
        from simcore.io.trajectory import read_state

        old_attrs = read_attrs(self.out)
        state = read_state(self.out)
        if state is None:
            raise UserInputError(
                f"{self.out} holds no final state (it was written by an older simcore or "
                "stopped as unstable), so it cannot be extended bit for bit; rerun it with "
                "the longer length.")
        check_state_like(self.out, state, self.model.init_state(self.params,
                                                                  self.settings.seed))
        old_steps = json.loads(str(old_attrs["run_parameters"]))["steps"]
        old_marks = frame_steps(old_steps, self.settings.write_every)
        if not self.marks.starts(old_marks):
            raise UserInputError(
                f"{self.out} ends at step {old_steps}, which is not a multiple of write_every "
                f"= {self.settings.write_every}: its last frame is not a frame of the longer "
                "run, so an extension could not equal it. Rerun it with the longer length.")
        for name in ("part", "ckpt", "tmp"):
            self.paths[name].unlink(missing_ok=True)
        self.state = state
        record = json.loads(provenance(self.argv))
        record["extended_from"] = json.loads(str(old_attrs.get("provenance", "{}")))
        self.provenance = json.dumps(record, sort_keys=True)
        self._create_log()
        names = [name for name, _, _ in self.frames.schema["fields"]]
        import netCDF4

        from simcore.io.nclock import NETCDF_LOCK

        with NETCDF_LOCK, netCDF4.Dataset(self.out) as ds:
            ds.set_auto_maskandscale(False)
            block = max(1, 2**24 // self.frames.dtype.itemsize)
            for k0 in range(0, len(old_marks), block):
                k1 = min(len(old_marks), k0 + block)
                # an AMBER file without a periodic axis has no cell: its lengths are zeros
                columns = {name: ds[name][k0:k1] if name in ds.variables
                           else np.zeros((k1 - k0, 3)) for name in names}
                try:
                    self.frames.append_frames(columns, k1 - k0)
                except OSError as exc:
                    raise write_error(self.paths["part"], exc, 0) from None
        self._checkpoint()
        self._start_assembler()
        self.log(f"Extending {self.out} from step {old_steps} to {self.settings.steps}.")

    def _create_log(self) -> None:
        model, params = self.model, self.params
        attrs = {
            "Conventions": "AMBER",
            "ConventionVersion": "1.0",
            "program": "simcore",
            "programVersion": __version__,
            "application": f"simcore {self.model_name}",
            "title": f"simcore {self.model_name} run"
            + (f" (preset {self.preset})" if self.preset else ""),
            "simcore_model": self.model_name,
            "simcore_ndim": np.int32(model.ndim),
            "length_unit": "model length unit (stored as angstrom; 1 angstrom = 1 unit)",
            "time_unit": "model time unit (stored as picosecond; 1 ps = 1 unit)",
            "run_parameters": self.run_json,
            "provenance": self.provenance,
        }
        if model.geometry is not None:
            attrs.update(model.geometry(params))
        schema = frame_schema(params.n, attrs, model.extra_variables(params),
                              self.settings.precision,
                              velocities=model.has_velocities, n_frames=len(self.marks),
                              compression=self.settings.compression)
        try:
            # the log is flushed once per chunk (see _append): hold no more in memory
            self.frames = FrameLogWriter.create(self.paths["part"], schema,
                                                buffer_frames=_frames_per_chunk(schema))
        except OSError as exc:
            raise write_error(self.paths["part"], exc, self.checkpointed) from None

    def _resume(self) -> None:
        ckpt = self.paths["ckpt"]
        state, meta, crcs = load_checkpoint(ckpt)
        if meta.get("run_parameters") != self.run_json:
            raise UserInputError(
                f"The checkpoint {ckpt} belongs to a run with other parameters than the ones "
                "given now; resume with the same command line, or pass --overwrite to start over.")
        if len(crcs) > len(self.marks):
            raise UserInputError(f"The checkpoint {ckpt} counts {len(crcs)} frames, more than "
                                 f"this run writes ({len(self.marks)}); rerun with --overwrite.")
        check_state_like(ckpt, state, self.model.init_state(self.params, self.settings.seed))
        try:
            self.frames = FrameLogWriter.reopen(self.paths["part"], crcs)
            self.frames.buffer_frames = _frames_per_chunk(self.frames.schema)
        except OSError as exc:
            raise write_error(self.paths["part"], exc, self.checkpointed) from None
        if self.frames.schema["attrs"].get("run_parameters") != self.run_json:
            raise UserInputError(
                f"{self.paths['part']} belongs to a run with other parameters than its "
                "checkpoint; rerun with --overwrite to start over.")
        expected = frame_schema(self.params.n, {}, self.model.extra_variables(self.params),
                                self.settings.precision,
                                velocities=self.model.has_velocities)
        if [f[0] for f in expected["fields"]] != [f[0] for f in self.frames.schema["fields"]]:
            raise UserInputError(
                f"{self.paths['part']} was written by a simcore version with another file "
                "layout (e.g. `velocities` where this version writes `drift`); it cannot be "
                "continued: rerun with --overwrite to start over.")
        self.state = state
        old = json.loads(str(meta.get("provenance", "{}")))
        old.setdefault("resumed", []).append(json.loads(provenance(self.argv))["utc_start"])
        self.provenance = json.dumps(old, sort_keys=True)
        self.checkpointed = len(crcs)
        self._start_assembler()
        self.log(f"Resuming {self.out} at step {self.marks[len(crcs) - 1]} of "
                 f"{self.settings.steps} ({len(crcs)} checkpointed frames verified).")

    # ------------------------------------------------------------------ frames
    def _start_assembler(self) -> None:
        """Write OUT.tmp from the log in a worker process (:mod:`simcore.io.assembler`):
        whole chunks of frames as they arrive, beginning with the frames the log already
        holds, while the kernel leaves a core idle (:func:`_writer_beside_run`); all of
        them after the last step otherwise."""
        from simcore.io.assembler import Assembler

        self.paths["tmp"].unlink(missing_ok=True)
        self.assembler = Assembler(self.paths["part"], self.paths["tmp"], self.settings.format,
                                   background=True,
                                   expected_bytes=len(self.marks) * self.frames.dtype.itemsize,
                                   attrs={"provenance": self.provenance},
                                   state_layout=state_layout(self._final_state()))
        self.feed_every = _frames_per_chunk(self.frames.schema)
        # fed as chunks complete while a core is idle; otherwise everything at the end
        self.feeding = _writer_beside_run(self.most_kernel_threads)
        if self.feeding:
            self._feed()

    def _final_state(self, copy: bool = False) -> dict:
        """The state stored in the file at the end (:func:`write_state`): the run's arrays,
        or copies of them."""
        return {k: np.copy(v) if copy else v for k, v in self.state.items()
                if not k.startswith("_")}

    def _feed(self) -> None:
        try:
            self.frames.flush()
        except OSError as exc:
            raise write_error(self.paths["part"], exc, self.checkpointed) from None
        self.assembler.feed(self.frames.n_frames, self.frames.crcs)
        self.fed = self.frames.n_frames

    def _append(self, f: int, states: dict | None = None, count: int = 1) -> None:
        """Log frame ``f`` of the run's state, or frames ``f .. f + count - 1`` of
        ``states`` (the states after ``count`` chunks, stacked: ``advance_frames``)."""
        variables = dict(self._engine_call(self.model.frame,
                                           self.state if states is None else states,
                                           self.params))
        variables["time"] = np.array(self.marks[f:f + count], dtype=np.float64) * self.dt
        try:
            self.frames.append_frames(variables, count)
        except OSError as exc:
            raise write_error(self.paths["part"], exc, self.checkpointed) from None
        # at every chunk completed (chunks start at frame 0), however many frames the
        # last feed had (frame 0 at the start, or any number on resuming)
        if self.assembler is not None and self.feeding and \
                self.frames.n_frames // self.feed_every > self.fed // self.feed_every:
            self._feed()

    def _checkpoint(self, state: dict | None = None) -> None:
        """Checkpoint the log's frames and ``state`` (default: the run's), the state at
        the last frame."""
        started = time.monotonic()
        try:
            self.frames.sync()
        except OSError as exc:
            raise write_error(self.paths["part"], exc, self.checkpointed) from None
        save_checkpoint(self.paths["ckpt"],
                        self._final_state() if state is None else state,
                        {"model": self.model_name, "run_parameters": self.run_json,
                         "frames_written": self.frames.n_frames,
                         "next_step": self.marks[self.frames.n_frames - 1],
                         "provenance": self.provenance},
                        self.frames.crcs)
        now = time.monotonic()
        self.checkpoint_cost = now - started
        self.last_checkpoint = now
        self.checkpointed = self.frames.n_frames

    def _checkpoint_due(self) -> bool:
        """Every ``checkpoint_seconds``, and every ``checkpoint_every`` frames unless that
        would spend more than 1/_COST_RATIO of the run on checkpoints (cheap frames: a
        checkpoint costs a few fsyncs, and losing 50 frames of a millisecond each costs less)."""
        s = self.settings
        since = time.monotonic() - self.last_checkpoint
        return (since >= s.checkpoint_seconds
                or (self.frames.n_frames - self.checkpointed >= s.checkpoint_every
                    and since >= _COST_RATIO * self.checkpoint_cost))

    # ------------------------------------------------------------------ the run
    def execute(self, action: str) -> None:
        started = time.perf_counter()
        with stop_requests() as stop, watch_compiles(self._compiling) as compiles:
            try:
                if action == "resume":
                    self._resume()
                elif action == "extend":
                    self._extend()
                else:
                    self._start_or_abandon(stop, compiles)
                first_step = self.marks[self.frames.n_frames - 1]
                bar = progress(self.settings.steps, initial=first_step,
                               unit=self.model.step_unit, desc=self.model_name,
                               quiet=self.quiet, paused=compiles)
                try:
                    stopped = self._loop(stop, bar, compiles)
                finally:
                    bar.close()
                release_spinning_workers()  # the cores are the file's now
                if not stopped:
                    self._finish()  # a signal now is too late to matter: finish the file
            finally:
                if self.frames is not None:
                    self.frames.close()
                if self.assembler is not None and not self.assembler.finished:
                    self.assembler.abort()  # OUT.tmp is a by-product: --resume makes it again
        if stopped:
            self._interrupted(stop.signum)
        self.log(run_summary(self.out, len(self.marks), self.settings.steps - first_step,
                             self.model.step_unit, time.perf_counter() - started,
                             self.engine_seconds, compiles(),
                             getattr(self.params, "n", None)))

    def _compiling(self) -> None:
        self.log(f"{self.model_name}: compiling the engine's kernels for this CPU (once after "
                 "installing or updating simcore; later runs load them from Numba's cache) ...")

    def _loop(self, stop, bar, compiles) -> bool:
        """Advance and write every remaining frame; True if a stop signal ended it early.

        A stop signal that arrived while the run started stops it at its first frame. One
        that arrives while the first interval compiles the kernels (``compiles.compiling``:
        a cold cache, a minute or more) abandons the compilation at once: the checkpoint
        holds the state at the interval's start, which ``--resume`` redoes."""
        import numba

        from simcore._errors import UnstableRunError
        from simcore.rng import kernel_key

        model, params, marks = self.model, self.params, self.marks
        key = kernel_key(self.settings.seed)
        last = len(marks) - 1
        chunk_seconds = None  # one chunk's wall time in the last kernel call
        f = self.frames.n_frames
        if stop.signum is not None and f <= last:  # it came while starting (or resuming)
            self._checkpoint()
            return True
        follower = (LoadFollower(self.most_threads, numba.get_num_threads())
                    if self.follow_load else None)
        # the first interval's start: its kernels may compile, which a stop may abandon
        at_start = self._final_state(copy=True)
        while f <= last:
            step0, n = marks[f - 1], marks[f] - marks[f - 1]
            if follower is not None:
                self._follow(follower)
            started = time.perf_counter()
            if at_start is not None:
                stop.abandon = lambda: compiles.compiling
            try:
                shown = 0  # steps of this call the bar has shown
                if model.advance_frames is None or self._in_pieces(chunk_seconds):
                    shown = self._advance_in_pieces(key, step0, n, chunk_seconds, bar, follower,
                                                    stop, at_start)
                    if shown is None:  # stopped between pieces, checkpointed at frame f - 1
                        return True
                    count = 1
                    self._append(f)
                else:
                    chunks = self._chunks_per_call(f, chunk_seconds)
                    states = self._timed_call(follower, n * chunks, model.advance_frames,
                                              self.state, params, key, step0, n, chunks,
                                              **self.kernel_args)
                    count = _chunks_in(states)
                    self._append(f, states, count)
            except UnstableRunError as err:
                good = getattr(err, "good_states", None)
                n_good = 0 if good is None else _chunks_in(good)
                if n_good:
                    self._append(f, good, n_good)
                self._unstable(err)
            except AbandonedForStop:  # the compilation: nothing ran that the state shows
                self._checkpoint(at_start)
                return True
            finally:
                stop.abandon = None
            at_start = None
            chunk_seconds = (time.perf_counter() - started) / count
            f += count
            bar.update(n * count - shown)
            if self.stop_after_frames is not None and self.frames.n_frames >= self.stop_after_frames:
                stop.signum = stop.signum or 2  # as if SIGINT arrived now
            if stop.signum is not None and f <= last:
                self._checkpoint()
                return True
            if f <= last and self._checkpoint_due():
                self._checkpoint()
        return False

    def _advance_in_pieces(self, key, step0: int, n: int, chunk_seconds: float | None, bar,
                           follower: LoadFollower | None, stop,
                           at_start: dict | None = None) -> int | None:
        """``advance`` by ``n`` steps from ``step0``: in one call when the last interval took
        at most twice :data:`_PIECE_SECONDS` (``chunk_seconds``), else in pieces of about
        that length at the rate measured on the pieces before (untimed, the first interval
        starts with one step and at most doubles: a run's first steps may be slow), showing
        each but the last on ``bar`` and following the load between them. Returns the
        steps shown, or None if a stop signal came between the pieces of an interval longer
        than :data:`_STOP_WITHIN_SECONDS`: then the checkpoint holds the state at the
        interval's start (the last frame's; ``--resume`` redoes the interval, to the same
        bits). ``at_start``: a copy of that state the caller holds already, if any."""
        if not self._in_pieces(chunk_seconds):
            self._timed_call(follower, n, self.model.advance, self.state, self.params, key,
                             step0, n, **self.kernel_args)
            return 0
        size = 1 if chunk_seconds is None else max(1, int(n * _PIECE_SECONDS / chunk_seconds))
        at_frame = at_start
        if at_frame is None and (chunk_seconds is None or chunk_seconds > _STOP_WITHIN_SECONDS):
            at_frame = self._final_state(copy=True)
        done = 0
        while True:
            take = min(size, n - done)
            before = self.engine_seconds
            self._timed_call(follower, take, self.model.advance, self.state, self.params, key,
                             step0 + done, take, **self.kernel_args)
            seconds = self.engine_seconds - before
            done += take
            if done == n:
                return done - take
            if stop.signum is not None and at_frame is not None:
                self._checkpoint(at_frame)
                return None
            bar.update(take)
            if follower is not None:
                self._follow(follower)
            size = max(1, min(2 * take if chunk_seconds is None else n,
                              int(take * _PIECE_SECONDS / max(seconds, 1e-9))))

    def _in_pieces(self, chunk_seconds: float | None) -> bool:
        """Whether the next frame interval is advanced in pieces: a long (or untimed) one,
        of an engine whose bits do not depend on where a run is cut."""
        return self.cuts_anywhere and _long_interval(chunk_seconds)

    def _engine_call(self, function, *args, **kwargs):
        """``function(*args, **kwargs)``, its wall time added to :attr:`engine_seconds`."""
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.engine_seconds += time.perf_counter() - started

    def _follow(self, follower: LoadFollower) -> None:
        """Change the thread count if other processes' load on our cores changed, or if the
        threads step slower than one thread (:class:`~simcore._cpu.SpeedFollower`)."""
        import numba

        changed = follower.check()
        if changed is not None:
            threads, busy = changed
            numba.set_num_threads(threads)
            self.log(f"Other processes now keep {busy:.1f} of the {len(follower.cores)} cores "
                     f"this process may use busy: continuing on {threads} thread(s) (results "
                     "do not depend on it).")
            return
        by_speed = follower.speed.check()
        if by_speed is not None:
            threads, line = by_speed
            numba.set_num_threads(threads)
            if line is not None:
                self.log(line)

    def _timed_call(self, follower: LoadFollower | None, steps: int, function, *args,
                    **kwargs):
        """:meth:`_engine_call`, its wall time per step reported to ``follower``."""
        if follower is None:
            return self._engine_call(function, *args, **kwargs)
        import numba

        threads, before = numba.get_num_threads(), self.engine_seconds
        result = self._engine_call(function, *args, **kwargs)
        follower.speed.observe(threads, self.engine_seconds - before, steps)
        return result

    def _chunks_per_call(self, f: int, chunk_seconds: float | None) -> int:
        """How many frame intervals one kernel call advances from frame ``f`` on
        (:func:`chunks_per_call`), not past ``stop_after_frames``, the next frame-count
        checkpoint or the next file chunk for a writer working beside the run, making at
        most :data:`_CALL_BYTES` of frame-log records."""
        n_frames = self.frames.n_frames
        count = min(chunks_per_call(self.marks, f, chunk_seconds),
                    max(1, _CALL_BYTES // self.frames.dtype.itemsize))
        if self.stop_after_frames is not None:
            count = min(count, max(1, self.stop_after_frames - n_frames))
        if self.feeding:  # the writer's worker gets each chunk of the file as it completes
            count = min(count, self.feed_every - n_frames % self.feed_every)
        due = self.checkpointed + self.settings.checkpoint_every  # unless already overdue
        if due > n_frames:
            count = min(count, due - n_frames)
        return count

    def _finish(self) -> None:
        """The final checkpoint and the NetCDF file assembled, made durable and renamed.

        The checkpoint (so that a kill while assembling loses no frame) is written while
        the assembler's worker writes the last chunk: its fsyncs wait on the disk, not on
        the CPU the compression needs. A kill before the checkpoint's rename resumes from
        the previous one, like a kill in the frame loop; OUT.tmp is never renamed
        unfinished."""
        try:
            self.frames.flush()
        except OSError as exc:
            raise write_error(self.paths["part"], exc, self.checkpointed) from None

        def checkpoint() -> None:
            if self.checkpointed != self.frames.n_frames and (
                    time.monotonic() - self.last_checkpoint
                    >= _COST_RATIO * self.checkpoint_cost):
                self._checkpoint()

        size = self.frames.n_frames * self.frames.dtype.itemsize
        if size > 256 * 2**20:
            self.log(f"Writing {self.out} from the frame log ({size / 2**20:.0f} MiB) ...")
        tmp = self.paths["tmp"]
        self.assembler.finish(
            self.frames.n_frames, self.frames.crcs, attrs={"provenance": self.provenance},
            final_state=self._final_state(), while_writing=checkpoint)
        try:
            replace(tmp, self.out)
        except OSError as exc:  # e.g. an immutable file given with --overwrite
            tmp.unlink(missing_ok=True)
            raise write_error(self.out, exc, self.checkpointed) from None
        fsync_dir(self.out)
        frames, self.frames = self.frames, None  # closed by _drop_log only (no second close)
        _drop_log(frames, self.paths["part"])
        unlink(self.paths["ckpt"])

    def _start_or_abandon(self, stop, compiles) -> None:
        """:meth:`_start`, except that a stop signal while it compiles kernels (a cold
        cache; hard discs equilibrate there) stops the run at once: before the first frame
        there is nothing to keep, so the frame log goes too and the same command, with
        or without ``--resume``, starts the run afresh."""
        stop.abandon = lambda: compiles.compiling
        try:
            self._start()
        except AbandonedForStop as exc:
            if self.frames is not None:
                frames, self.frames = self.frames, None
                frames.close()
            self.paths["part"].unlink(missing_ok=True)
            raise RunInterrupted(exc.signum, (
                f"Interrupted by {_signal_name(exc.signum)} while compiling the kernels, "
                "before the first frame: nothing was written. Run the same command again "
                "(with or without --resume) to start it.")) from None
        finally:
            stop.abandon = None

    def _interrupted(self, signum: int) -> None:
        name = _signal_name(signum)
        at = self.marks[self.frames.n_frames - 1]
        message = (f"Interrupted by {name} at step {at} of {self.settings.steps}; checkpoint "
                   f"written. Continue with the same command and --resume.")
        raise RunInterrupted(signum, message)

    def _unstable(self, err) -> None:
        """Keep the good frames in OUT.unstable.nc, remove the partial files, say where."""
        from simcore._errors import UnstableRunError

        n_good = self.frames.n_frames
        t_last = self.marks[n_good - 1] * self.dt
        where = unused_name(self.paths["unstable"])  # an earlier one is kept, never replaced
        try:
            self.frames.sync()
            self.frames.close()
            assemble(self.paths["part"], where, self.settings.format, n_good, self.frames.crcs,
                     attrs={"provenance": self.provenance,
                            "simcore_incomplete": f"stopped: unstable after step "
                                                  f"{self.marks[n_good - 1]}"})
            fsync_dir(where)  # its name is durable before the log goes
            frames = (f"The {n_good} frames before it (t = 0 .. {t_last:g}) are" if n_good > 1
                      else "The initial frame is")
            kept = (f"{frames} in {where}; the partial files were removed, so the corrected "
                    "command starts afresh.")
        except (OSError, UserInputError) as exc:
            kept = f"Its frames could not be saved ({exc})."
        for name in ("part", "ckpt"):
            self.paths[name].unlink(missing_ok=True)
        raise UnstableRunError(f"{err} {kept}", first_step=getattr(err, "first_step", None),
                               last_step=getattr(err, "last_step", None)) from None


def _set_idle_threads(log) -> None:
    """Default thread count: the cores of this process that other processes leave idle
    (spinning OpenMP workers lose more on a shared core than a thread gains)."""
    import numba

    most = numba.config.NUMBA_NUM_THREADS
    threads, busy = idle_threads(most)
    numba.set_num_threads(threads)
    if threads < most:
        log(f"{busy:.1f} of the {len(usable_cores())} cores this process may use are busy "
            f"with other processes: running on {threads} thread(s) instead of {most} "
            "(--threads N chooses; results do not depend on it).")


def _set_threads(threads: int) -> None:
    import numba

    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise UserInputError(
            f"--threads must be between 1 and {numba.config.NUMBA_NUM_THREADS} on this machine "
            f"(got {threads})."
        )
    numba.set_num_threads(threads)
