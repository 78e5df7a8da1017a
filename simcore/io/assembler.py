"""The NetCDF trajectory written from the frame log, while the run goes on.

A run's frames go to the crash-safe frame log (:mod:`simcore.io.framelog`); the NetCDF
file is made from it. Compressing and writing it costs about as much as a cheap
simulation itself (zlib at 20-80 MiB/s), so instead of doing it all after the last step,
:class:`Assembler` in ``background`` mode has a worker process write each whole chunk of
frames into ``OUT.tmp`` as soon as the log holds it, on another core while the kernels
run. At the end only the last partial chunk, the final state and the attributes remain.
The caller decides whether to feed it during the run: the driver does only while the
kernel leaves a core idle (``driver._writer_beside_run``); a worker competing with a
threaded kernel on every core stalls its threads, so such a run hands the worker
everything at :meth:`Assembler.finish` (if the frames fit one write block, the caller
encodes their chunks meanwhile, while the worker creates the file: see
:meth:`Assembler._encodes_here`).

A process, not a thread: netCDF-C and its HDF5 are not thread-safe, even across files,
and netCDF4-python releases the GIL in its calls, so a writer thread would race with any
netCDF call elsewhere in the user's process (an xarray dataset read in another thread, or
one finalised by the garbage collector) and can crash it. The worker imports only NumPy,
netCDF4, h5py and ``simcore.io`` (~0.35 s of a core). It is started when the run
starts (:func:`prestart`, before the run's own set-up, so the imports overlap it) and
serves the process's later runs too: a finished run hands it back to a pool of one idle
worker, so a notebook, a script or a sweep worker pays the start once. Runs with fewer
than :data:`BACKGROUND_MIN_BYTES` of frames use none, nor do runs of a process with a
single core; a run that ends before its worker is ready writes the file after the last
step in the caller's thread (quicker than waiting) and leaves the worker to the next run.

netCDF-C creates the file and writes the final state and attributes; the frames in
between go in with h5py as whole chunks compressed by :mod:`simcore.io.h5chunks` (ISA-L's
deflate, ~6x netCDF-C's zlib), never with both libraries holding the file open. After
the last step (the finish) the chunks are encoded on every core the process may use.

Nothing about crash safety changes: ``OUT.tmp`` is a by-product, never read back; a
killed or interrupted run removes it (or leaves it to be replaced), and ``--resume``
assembles again from the checkpointed log. Every frame is checked against its CRC-32
before it is written, as the end-of-run assembly did, and the file's values are those of
a one-shot assembly bit for bit: the same frames, in the same chunk-aligned blocks. If
the worker dies (killed, out of memory), the caller writes the whole file itself at the
end, from the log.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Mapping

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import netCDF4
import numpy as np

from simcore._cpu import OWN_HELPERS, usable_cores
from simcore._errors import UserInputError
from simcore.io.atomic import fsync_file
from simcore.io.framelog import DamagedLogError, FrameLogReader, grown
from simcore.io.nclock import NETCDF_LOCK, no_automatic_collection
from simcore.io.write_errors import disk_full_error, is_space_error

_BLOCK_BYTES = 16 * 2**20  # frames per write call: whole chunks, about this many bytes
#: runs write OUT.tmp in the background (False: all of it after the last step, as before;
#: benchmarks/store.py measures both)
BACKGROUND = True
#: a run with fewer bytes of frames than this writes its file after the last step (a few
#: milliseconds of compression: not worth a worker's start)
BACKGROUND_MIN_BYTES = 2**18
_PIPE_BYTES = 2**20  # the pipe to the worker (Linux's default pipe-max-size)
#: a file the caller encodes while the worker creates it (see Assembler._encodes_here):
#: up to about as long to encode on one core (~3 ms a MB) as the creation; a larger one's
#: chunks are encoded by the worker on every core beside the creation (the pipe's copies
#: and one core would cost more: 9.6 MB of frames, 56-57 -> 61-66 ms)
_CALLER_ENCODES_BYTES = 2 * 2**20
_STOP_SECONDS = 60.0  # an aborted worker gets this long to exit before it is killed
_NEVER_READY_SECONDS = 30.0  # an idle worker not through its imports by then is replaced


class AssemblerFailure(Exception):
    """An unexpected exception in the worker process (a bug), with its traceback."""


class Assembler:
    """Write the NetCDF file ``out`` from the frame log ``part``.

    ``attrs`` (global attributes) and ``state_layout`` (the final state's
    :func:`~simcore.io.trajectory.state_layout`), where known at the start, go into the
    file when it is created. ``feed(n, crcs)`` says that the log holds frames 0..n-1
    (flushed) with checksums ``crcs``; :meth:`finish` writes what remains, the final state and the attributes,
    closes and fsyncs the file. With ``background=True`` (``netcdf4`` format only: an
    AMBER file's layout depends on every frame's cell) and ``expected_bytes`` (the run's
    frames) of at least :data:`BACKGROUND_MIN_BYTES`, a worker process writes meanwhile;
    :meth:`abort` stops it and removes the file.
    """

    def __init__(self, part: str | Path, out: str | Path, fmt: str, background: bool = False,
                 expected_bytes: int | None = None, attrs: Mapping[str, object] | None = None,
                 state_layout: Mapping[str, tuple] | None = None):
        # absolute: a process's worker keeps the folder it started in, and the caller may
        # have changed folders since (os.chdir in a notebook)
        self.part, self.out, self.fmt = Path(part).absolute(), Path(out).absolute(), fmt
        # known before the end: the file gets them when it is created, so that finish()
        # need not reopen it with netCDF-C (netcdf4 format; finish() says which final
        # state and attributes; any that differ are written then)
        self.attrs = dict(attrs or {})
        self.state_layout = dict(state_layout) if state_layout and fmt == "netcdf4" else None
        self.background = (background and BACKGROUND and fmt == "netcdf4"
                           and (expected_bytes is None or expected_bytes >= BACKGROUND_MIN_BYTES))
        self.written = 0  # frames in the NetCDF file (in-process writes)
        self._n_final: int | None = None
        self.finished = False  # finish() returned: the file is complete
        self._ds = None
        self._state_variables: dict = {}  # h5py handles of the final state's variables
        #: the worker's: whether its next job is already waiting (then a block's early
        #: fdatasync is skipped: that job's own, or the final fsync, covers it)
        self.job_waiting: Callable[[], bool] = lambda: False
        #: the worker's: the chunks the caller encoded (a finish that says so; see
        #: _encodes_here), read from the caller when the file exists
        self.callers_chunks: Callable[[], dict] = lambda: {}
        self._error: BaseException | None = None
        self._worker: _Worker | None = _take_worker() if self.background else None
        self.background = self._worker is not None  # None: no process to start, one core
        self._sent = 0  # frames whose checksums the worker has
        self._ready = False  # the worker has started (imported its modules) and has the job
        self.by_worker = False  # finish(): the worker wrote the file
        if self._worker is not None and self._worker.ready:
            self._begin()

    # ------------------------------------------------------------------ the caller's side
    def feed(self, n_frames: int, crcs: np.ndarray) -> None:
        """Frames 0..n_frames-1 are in the log; write their whole chunks (background only)."""
        if self._worker is not None:
            self._poll_worker()
            if self._ready:
                self._send(("frames", n_frames, self._new_crcs(n_frames, crcs)))

    def finish(self, n_frames: int, crcs: np.ndarray, attrs: Mapping[str, object] | None = None,
               final_state: Mapping[str, np.ndarray] | None = None,
               while_writing: Callable[[], None] | None = None) -> None:
        """Write every remaining frame, ``final_state`` and ``attrs``; close and fsync the file
        (not its folder: the caller renames it, or fsyncs the folder itself).

        ``while_writing`` is called in the caller's thread meanwhile (background mode;
        before the writing otherwise): the run's last checkpoint, whose fsyncs then wait
        while the worker compresses. Raises :class:`~simcore.io.framelog.DamagedLogError`
        if a frame fails its checksum and :class:`UserInputError` for a failed write
        (``out`` is then removed)."""
        crcs = np.asarray(crcs, np.uint32)[:n_frames].copy()
        job = ("finish", n_frames, crcs, attrs, final_state)
        if self._worker is not None:
            self._poll_worker()
        if self._worker is not None and not self._ready:
            # still starting (a short run): writing here is quicker than waiting for it
            self._release_worker()
        if self._worker is not None:
            reader = self._encodes_here(n_frames)
            self._send(("finish", n_frames, self._new_crcs(n_frames, crcs), attrs, final_state,
                        reader is not None))
            if reader is not None:
                try:
                    encoded = self._encode(reader, n_frames, crcs)
                except BaseException:
                    self.abort()  # the worker waits for the chunks: it is told to stop
                    raise
                self._send(("encoded", encoded))
        if while_writing is not None:
            while_writing()  # if it raises, the caller's abort() stops the worker
        while self._worker is not None:
            reply = self._receive()
            if reply is None:  # it died: written here below
                break
            if reply[0] == "error":
                self._error = _decode(reply[1])
                break
            if reply[0] == "done":
                self.by_worker = True
                self._release_worker()
        if not self.by_worker and self._error is None:
            # in-process: no worker, or it died (one run at a time); netCDF-C and HDF5 run
            # beside encoding threads, so no collection may finalise a dataset meanwhile
            with NETCDF_LOCK, no_automatic_collection():
                self._run(job)
        self._raise_worker_error()
        self.finished = True

    def abort(self) -> None:
        """Stop the worker (if any), drop the unfinished file. Safe to call more than once."""
        if self.finished:
            return
        if self._worker is not None and not self._ready:
            self._release_worker()  # it has no job yet: the next run may use it
        self._stop_worker(abort=True)
        with NETCDF_LOCK:
            self._close(failed=True)
        self.out.unlink(missing_ok=True)

    def _encodes_here(self, n_frames: int) -> FrameLogReader | None:
        """The log's reader if this process encodes the file's chunks for the worker: a
        netcdf4 file the worker has not begun (nothing fed) of at most
        :data:`_CALLER_ENCODES_BYTES` of frames in one block. The worker creates the file
        meanwhile: in one process the creation (HDF5 calls holding the GIL) slowed the
        encoding beside it 2-3x."""
        from simcore.io.trajectory import _frames_per_chunk

        if self.fmt != "netcdf4" or self._sent or n_frames < 1:
            return None
        reader = FrameLogReader(self.part)
        return reader if n_frames * reader.dtype.itemsize <= _CALLER_ENCODES_BYTES and \
            n_frames <= _block_frames(reader, _frames_per_chunk(reader.schema)) else None

    def _encode(self, reader: FrameLogReader, n_frames: int, crcs: np.ndarray) -> dict:
        """Every frame's chunks as :func:`~simcore.io.h5chunks.encode_frames` makes them for
        the file's layout, each frame checked against its checksums first."""
        from simcore.io.h5chunks import encode_frames
        from simcore.io.trajectory import frame_chunk_layouts

        bad = reader.first_bad_frame(crcs[:n_frames])
        if bad is not None:
            raise DamagedLogError(reader.damage_message(bad, n_frames))
        records = reader.records(n_frames)
        self._choose_variables(reader, records)
        columns = self._columns(records, 0, n_frames)
        layouts = frame_chunk_layouts(reader.schema)
        # one thread: the worker creates the file on the other core
        return encode_frames({name: columns[name] for name in layouts}, layouts, 1)

    # ------------------------------------------------------------------ talking to the worker
    def _begin(self) -> None:
        """The worker is ready: give it this run's files."""
        self._ready = True
        self._send(("open", str(self.part), str(self.out), self.fmt, self.attrs,
                    self.state_layout))

    def _release_worker(self) -> None:
        """Hand the worker back to the pool (it finished this run's file, or never began it)."""
        worker, self._worker = self._worker, None
        _give_back(worker)

    def _new_crcs(self, n_frames: int, crcs: np.ndarray) -> bytes:
        """The checksums the worker does not have yet, as bytes (an array pickles 10x
        slower: ~20 us of each message on the run's thread)."""
        new = np.asarray(crcs, np.uint32)[self._sent:n_frames].tobytes()
        self._sent = max(self._sent, n_frames)
        return new

    def _send(self, message) -> None:
        if self._worker is None:  # lost while polling
            return
        try:
            self._worker.to_worker.send(message)
        except OSError:  # the worker died: a broken pipe
            self._worker_lost()

    def _receive(self):
        try:
            return self._worker.from_worker.recv()
        except (EOFError, OSError):
            self._worker_lost()
            return None

    def _poll_worker(self) -> None:
        """Read what the worker sent: that it is ready, or its error (raised)."""
        while self._worker is not None:
            try:
                pending = self._worker.has_reply()
            except OSError:
                pending = False
            if not pending:
                return
            reply = self._receive()
            if reply is None:
                return
            if reply[0] == "ready":
                self._worker.ready = True
                self._begin()
            elif reply[0] == "error":
                self._error = _decode(reply[1])
                self._raise_worker_error()

    def _worker_lost(self) -> None:
        """The worker died without a word (killed, out of memory): the caller writes the
        whole file itself at the end, from the log."""
        proc = self._worker.proc
        self._stop_worker(abort=True)
        self.out.unlink(missing_ok=True)
        print(f"simcore: the process writing {self.out.name} exited (code {proc.returncode}); "
              "the file is written after the last step instead.", file=sys.stderr)

    def _stop_worker(self, abort: bool) -> None:
        """Stop the worker (it exits: an aborted or failed run's worker is not reused)."""
        if self._worker is None:
            return
        worker, self._worker = self._worker, None
        if abort:
            try:
                worker.to_worker.send(("abort",))
            except OSError:
                pass
        worker.close()
        try:
            worker.proc.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()

    # ------------------------------------------------------------------ the worker's side
    def _run(self, job) -> None:
        from simcore.io.trajectory import write_state

        try:
            if job[0] == "frames":
                self._write(job[1], job[2], final=False)
            else:
                _, n_frames, crcs, attrs, final_state, *encoded_by_caller = job
                self._n_final = n_frames
                opened_before = self._ds is not None
                self._write(n_frames, crcs, final=True, attrs=attrs,
                            encoded_by_caller=bool(encoded_by_caller and encoded_by_caller[0]))
                late_attrs = {k: v for k, v in (attrs or {}).items() if opened_before
                              and (k not in self.attrs or self.attrs[k] != v)}
                if self.state_layout is not None:
                    self._fill_state(final_state)
                    final_state = None
                if self.fmt == "netcdf4" and (late_attrs or final_state is not None):
                    self._close(failed=False)  # h5py: what is left goes in with netCDF-C
                    self._ds = netCDF4.Dataset(self.out, "a")
                if final_state is not None:
                    write_state(self._ds, final_state)
                for key, value in late_attrs.items():
                    self._ds.setncattr(key, _nc_value(value))
                self._close(failed=False)
                fsync_file(self.out)  # the folder is fsynced by the caller, after its rename
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            self._error = exc

    def _fill_state(self, final_state) -> None:
        """The final state's bytes into the variables defined when the file was created."""
        from simcore.io.trajectory import STATE_PREFIX, state_bytes, state_layout

        if final_state is None or state_layout(final_state) != self.state_layout:
            raise ValueError(f"the final state's layout is not the one announced "
                             f"({self.state_layout})")
        for name, value in final_state.items():
            raw = state_bytes(value)
            if not raw.size:
                continue
            variable = self._state_variables.get(name)
            if variable is None:
                variable = self._ds[STATE_PREFIX + name]
            if isinstance(self._ds, netCDF4.Dataset) or variable.shape != raw.shape or \
                    variable.dtype != raw.dtype:
                variable[:] = raw
            else:  # h5py, after the last step: its low-level whole-variable write takes
                # ~30 us where slicing takes ~200 (same bytes, no conversion: same dtype)
                from h5py import h5s

                variable.id.write(h5s.ALL, h5s.ALL, raw)

    def _open_from_first_frame(self, reader: FrameLogReader, crcs: np.ndarray,
                               n_frames: int) -> None:
        """:meth:`_open` with the first frame's records (the cell is fixed for a run)."""
        bad = reader.first_bad_frame(crcs[:1], start=0)
        if bad is not None:
            raise DamagedLogError(reader.damage_message(bad, n_frames))
        self._open(reader, reader.records(1), None)

    def _choose_variables(self, reader: FrameLogReader, records) -> None:
        """``cell`` and ``names`` (the schema's fields the file gets)."""
        from simcore.io.trajectory import has_periodic_axis

        # AMBER files of a system without a periodic axis have no cell variables (the
        # AMBER convention; MDAnalysis cannot read an all-zero cell); netcdf4 files keep
        # them with zeros for the non-periodic axes (ASE needs them).
        self.cell = self.fmt != "amber" or has_periodic_axis(records["cell_lengths"])
        self.names = [name for name, _, _ in reader.schema["fields"]
                      if self.cell or name not in ("cell_lengths", "cell_angles")]

    def _open(self, reader: FrameLogReader, records, attrs) -> None:
        from simcore.io.trajectory import _define, _json_attr

        self._choose_variables(reader, records)
        self.schema = dict(reader.schema)
        self.schema["attrs"] = {**self.schema["attrs"],
                                **{k: _json_attr(v)
                                   for k, v in {**self.attrs, **(attrs or {})}.items()}}
        self.dtype = reader.dtype
        if self.fmt == "netcdf4":
            # netCDF-C's file, made from this process's template of its layout
            # (simcore.io.ncfile); the frames go in with h5py, whole chunks compressed here
            # (simcore.io.h5chunks)
            from simcore.io.h5chunks import FrameAppender
            from simcore.io.ncfile import create

            self._ds, memo = create(self.out, self.schema, self.fmt, self.cell,
                                    self.state_layout)
            if self.state_layout is not None:  # looked up now, not after the last step
                from simcore.io.trajectory import STATE_PREFIX

                self._state_variables = {name: self._ds[STATE_PREFIX + name]
                                         for name in self.state_layout}
            names = self.names + ["frame"] + (["cell_angles"] if self.cell else [])
            known = memo.get(("appender", *names))  # the layout's chunking and filters
            self._frames = FrameAppender(self._ds, names, known)
            if known is None:
                memo[("appender", *names)] = self._frames.facts()
        else:
            self._ds = netCDF4.Dataset(self.out, "w", format=_formats()[self.fmt])
            _define(self._ds, self.schema, self.fmt, cell=self.cell, state=self.state_layout)

    def _write(self, n_frames: int, crcs: np.ndarray, final: bool, attrs=None,
               encoded_by_caller: bool = False) -> None:
        from simcore.io.trajectory import _frames_per_chunk

        reader = FrameLogReader(self.part)
        per_chunk = _frames_per_chunk(reader.schema)
        end = n_frames if final else n_frames // per_chunk * per_chunk
        if encoded_by_caller:  # the worker: the caller encodes every chunk meanwhile
            self._write_callers_chunks(reader, crcs, end, attrs)
            self._frames.finish(1)
            return
        if self._ds is None and n_frames > 0 and not final:
            # create the file (~7 ms: netCDF-C's definitions, then h5py) as soon as the
            # first frame is in, not with the first whole chunk: in a short run that chunk
            # is completed just before the end, where the caller waits
            self._open_from_first_frame(reader, crcs, n_frames)
        if end <= self.written and not final:
            return
        bad = reader.first_bad_frame(crcs[:end], start=self.written)
        if bad is not None:
            raise DamagedLogError(reader.damage_message(bad, n_frames))
        records = reader.records(end)
        block = _block_frames(reader, per_chunk)
        # after the last step the run's cores are free: chunks encoded on all of them
        threads = len(usable_cores()) if final else 1
        if self._ds is None and self.fmt == "netcdf4" and threads > 1 and end <= block:
            self._open_while_encoding(reader, records, attrs, end, threads)
        elif self._ds is None:
            self._open(reader, records, attrs)
        ds = self._ds
        for k0 in range(self.written, end, block):
            columns = self._columns(records, k0, min(end, k0 + block))
            k1 = k0 + len(columns["frame"])
            if self.fmt == "netcdf4":
                self._frames.append(columns, threads)
            else:
                for name, values in columns.items():
                    ds[name][k0:k1] = values
            self.written = k1
        if self.fmt != "netcdf4":
            if not final and end > 0:
                # HDF5 keeps written chunks in its cache and compresses them only when they
                # leave it (at the latest when the file closes): flush them now, in this thread
                ds.sync()
        elif final:
            self._frames.finish(threads)
        elif end > 0 and not self.job_waiting():
            # this file and the log on disk now, on this core, while the run goes on: the
            # final fsyncs (this one's, and the caller's last checkpoint's) then wait for
            # the end only (a hard-disc default run's finish: 51 -> 22 ms, Zen 1 VM); not
            # when the next job (often the finish) waits already: it would wait on the disk
            for path in (self.out, self.part):
                fsync_file(path, data_only=True)

    def _write_callers_chunks(self, reader: FrameLogReader, crcs: np.ndarray, end: int,
                              attrs) -> None:
        """Create the file while the caller encodes the chunks of frames 0..end-1 (see
        :meth:`_encodes_here`), then write them (frames checked here too)."""
        if self._ds is not None or self.written:
            raise AssemblerFailure("the caller encoded a file the worker had begun")
        bad = reader.first_bad_frame(crcs[:end])
        if bad is not None:
            raise DamagedLogError(reader.damage_message(bad, end))
        records = reader.records(end)
        self._open(reader, records, attrs)
        # made while the caller still encodes: a variable whose layout differs from the
        # file's (never seen) is encoded here from them
        columns = self._columns(records, 0, end)
        self._frames.write_encoded(self.callers_chunks(), columns, 1)
        self.written = end

    def _columns(self, records, k0: int, k1: int) -> dict[str, np.ndarray]:
        """Frames k0..k1-1 of every variable written per frame, each a contiguous array."""
        chunk = np.asarray(records[k0:k1])
        columns = {name: np.ascontiguousarray(chunk[name]) for name in self.names}
        columns["frame"] = np.arange(k0, k1, dtype=np.int32)
        if self.cell:
            columns["cell_angles"] = np.full((k1 - k0, 3), 90.0)
        return columns

    def _open_while_encoding(self, reader: FrameLogReader, records, attrs, end: int,
                             threads: int) -> None:
        """Create the file (netCDF-C: 5-9 ms of one core; a template's copy 2-4 ms) while
        the chunks of all ``end`` frames are encoded on the others (on all cores for a file
        over :data:`_CALLER_ENCODES_BYTES`), then write them (a file made after the last
        step: its frames fit one block). netCDF-C and HDF5 run in the creating thread only; the
        encoding needs NumPy and ISA-L, which release the GIL. Chunks encoded for a layout
        the file turns out not to have are encoded again for the file's (never seen: the
        layouts are those of trajectory._define)."""
        import threading

        from simcore.io.h5chunks import encode_frames
        from simcore.io.trajectory import frame_chunk_layouts

        self._choose_variables(reader, records)  # (again in _open: the same)
        columns = self._columns(records, 0, end)
        failed: list[BaseException] = []

        def create() -> None:
            try:
                self._open(reader, records, attrs)
            except BaseException as exc:  # noqa: BLE001 (raised in the caller's thread)
                failed.append(exc)

        creating = threading.Thread(target=create, name="simcore-create-file")
        creating.start()
        try:
            layouts = frame_chunk_layouts(reader.schema)
            # a file whose encoding outlasts the creation gets every core (2 threads beside
            # the creation: 69-74 -> 49-54 ms for 9.6 MB of frames), a small one one less
            large = end * reader.dtype.itemsize > _CALLER_ENCODES_BYTES
            encoded = encode_frames({name: columns[name] for name in layouts}, layouts,
                                    threads if large else threads - 1)
        finally:
            creating.join()
        if failed:
            raise failed[0]
        self._frames.write_encoded(encoded, columns, threads)
        self.written = end

    def _close(self, failed: bool) -> None:
        if self._ds is None:
            return
        ds, self._ds = self._ds, None
        self._state_variables = {}  # handles into the file being closed
        if not isinstance(ds, netCDF4.Dataset):  # h5py: safe to close after a failed write
            try:
                ds.close()
            except (OSError, RuntimeError):
                if not failed:
                    raise
            return
        if failed:
            try:
                ds.close()
            except (OSError, RuntimeError):
                from simcore.io.trajectory import FAILED_HANDLES

                FAILED_HANDLES.append(ds)  # never closed again (see there)
        else:
            ds.close()

    def _raise_worker_error(self) -> None:
        exc = self._error
        if exc is None:
            return
        self._error = None
        self._stop_worker(abort=True)
        if isinstance(exc, (DamagedLogError, UserInputError)) or not isinstance(
                exc, (OSError, RuntimeError)):
            self.abort()
            raise exc
        if isinstance(self._ds, netCDF4.Dataset):
            from simcore.io.trajectory import FAILED_HANDLES

            FAILED_HANDLES.append(self._ds)
            self._ds = None
        self._close(failed=True)
        space = is_space_error(exc, self.out)
        self.out.unlink(missing_ok=True)
        n = self._n_final
        if n is None:  # during the run: the log holds the frames, the checkpoint counts them
            kept = (f"Frames up to the last checkpoint are kept in {self.part.name}: "
                    "{fix} and rerun the same command with --resume to continue.")
        else:
            kept = (f"All {n} frames are safe in {self.part.name}: {{fix}} and rerun the same "
                    "command with --resume to finish the file.")
        if space:
            from simcore._memory import format_bytes

            size = (f"{format_bytes(n * FrameLogReader(self.part).dtype.itemsize)} (about the "
                    "size of the frames, less when compressed)" if n is not None
                    else "the size of the frames (less when compressed)")
            raise disk_full_error(self.out, exc, kept=kept.replace(
                "{fix}", f"free at least {size}")) from None
        raise UserInputError(f"Writing {self.out} failed ({getattr(exc, 'strerror', None) or exc}"
                             f"). " + kept.replace("{fix}", "fix the problem")) from None


def _block_frames(reader: FrameLogReader, per_chunk: int) -> int:
    """Frames per write call: whole chunks, about :data:`_BLOCK_BYTES`."""
    return per_chunk * max(1, _BLOCK_BYTES // max(1, per_chunk * reader.dtype.itemsize))


# ---------------------------------------------------------------------- the worker process
# The worker imports simcore.io without simcore/__init__ (which loads every engine):
# a bare package module pointing at simcore's folder stands in for it.
_BOOT = ("import sys, types; pkg = types.ModuleType('simcore'); pkg.__path__ = [sys.argv[3]]; "
         "sys.modules['simcore'] = pkg; from simcore.io.assembler import _serve; "
         "_serve(int(sys.argv[1]), int(sys.argv[2]))")


def _start_worker():
    """Start a worker process; returns (process, connection to it, connection from it)."""
    job_read, job_write = os.pipe()
    _widen_pipe(job_write)
    reply_read, reply_write = os.pipe()
    package = str(Path(__file__).resolve().parents[1])
    try:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _BOOT, str(job_read), str(reply_write), package],
            pass_fds=(job_read, reply_write), stdin=subprocess.DEVNULL, env=_worker_env(),
            stdout=subprocess.DEVNULL, start_new_session=True)  # Ctrl-C stops the caller only
    finally:
        os.close(job_read)
        os.close(reply_write)
    return proc, Connection(job_write, readable=False), Connection(reply_read, writable=False)


def _worker_env() -> dict[str, str]:
    """The caller's environment with one BLAS thread: the worker does no linear algebra,
    and NumPy's OpenBLAS pool spins ~0.1 s of a core after loading, beside the run."""
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def _widen_pipe(fd: int) -> None:
    """Let the pipe to the worker hold a final state of up to 1 MiB (Linux), so that
    ``finish`` hands it over without waiting for the worker to read (a hard-disc default
    state, 129 KB, took 5 ms through the default 64 KiB pipe; Zen 1 VM)."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setsize is None:
        return
    try:
        fcntl.fcntl(fd, setsize, _PIPE_BYTES)
    except OSError:  # above the system's pipe-max-size: the default size works too
        pass


class _Worker:
    """A worker process, its two connections, and whether it said it is ready."""

    def __init__(self, proc, to_worker: Connection, from_worker: Connection):
        self.proc, self.to_worker, self.from_worker = proc, to_worker, from_worker
        self.started = time.monotonic()
        self.ready = False
        # asked once per chunk on the run's thread: a poll object answers in ~1 us where
        # Connection.poll(0) builds a selector each time (~65 us inside a run, Zen 1 VM)
        self._replies = None
        if hasattr(select, "poll"):
            self._replies = select.poll()
            self._replies.register(from_worker.fileno(), select.POLLIN)

    def has_reply(self) -> bool:
        """Whether the worker has sent something (or closed its end) not read yet."""
        if self._replies is None:
            return self.from_worker.poll(0)
        return bool(self._replies.poll(0))

    def usable(self) -> bool:
        """Alive, and ready or still within its start-up time (reads its 'ready')."""
        if self.proc.poll() is not None:
            return False
        try:
            while not self.ready and self.has_reply():
                self.ready = self.from_worker.recv()[0] == "ready"
        except (EOFError, OSError):
            return False
        return self.ready or time.monotonic() - self.started < _NEVER_READY_SECONDS

    def close(self) -> None:
        """Close this side's connections: the worker reads EOF and exits."""
        OWN_HELPERS.discard(self.proc.pid)
        self.to_worker.close()
        self.from_worker.close()


# One idle worker per process, kept for the process's next run (a forked child forgets
# its parent's: the pipes would be shared).
_pool_lock = threading.Lock()
_idle: list[_Worker] = []


def _spare_core() -> bool:
    """Whether this process may use two cores (a worker on its only core gains nothing)."""
    return len(usable_cores()) >= 2


def _spawn() -> _Worker | None:
    if not _spare_core():
        return None
    try:
        worker = _Worker(*_start_worker())
    except OSError:  # no process to start (an embedded interpreter): write at the end
        return None
    OWN_HELPERS.add(worker.proc.pid)  # its imports are not other processes' load
    return worker


def _take_worker() -> _Worker | None:
    """An idle worker of this process, else a new one (None: none can be started)."""
    with _pool_lock:
        while _idle:
            worker = _idle.pop()
            if worker.usable():
                return worker
            _discard(worker)
    return _spawn()


def _give_back(worker: _Worker) -> None:
    with _pool_lock:
        if not _idle and worker.usable():
            _idle.append(worker)
            return
    _discard(worker)


def _discard(worker: _Worker) -> None:
    worker.close()
    if not worker.ready:  # stuck in its start (it reads no EOF before it is ready)
        worker.proc.kill()
    try:  # reaped: a process still running when its Popen is collected is a ResourceWarning
        worker.proc.wait(timeout=_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait()


def prestart(expected_bytes: int) -> None:
    """Start the worker of a run about to write ``expected_bytes`` of frames now, unless one
    is idle, so that its imports overlap the run's own set-up (the run takes it from the
    pool when its frame log exists)."""
    if not BACKGROUND or expected_bytes < BACKGROUND_MIN_BYTES:
        return
    with _pool_lock:
        if _idle:
            return
    worker = _spawn()
    if worker is not None:
        _give_back(worker)


def _take_idle_workers() -> list[_Worker]:
    with _pool_lock:
        workers = list(_idle)
        _idle.clear()
    return workers


def release_idle_workers() -> None:
    """Let this process's idle worker exit (at exit; benchmarks measuring a first run)."""
    for worker in _take_idle_workers():
        _discard(worker)


def _forget_parents_workers() -> None:
    global _pool_lock
    _pool_lock = threading.Lock()
    for worker in _idle:
        worker.close()  # the child's copies of the pipes
    _idle.clear()


def _release_at_exit() -> None:
    """:func:`release_idle_workers` at exit; a Ctrl-C meanwhile (waiting for the worker to
    exit) kills it instead of printing a traceback after the run has finished."""
    workers = _take_idle_workers()
    try:
        for worker in workers:
            _discard(worker)
    except KeyboardInterrupt:
        for worker in workers:
            worker.proc.kill()


atexit.register(_release_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parents_workers)


def _serve(job_fd: int, reply_fd: int) -> None:
    """The worker's loop: say it is ready; then, for each run, write whole chunks as the
    caller reports frames and finish the file; exit when the caller aborts or goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    jobs, replies = Connection(job_fd, writable=False), Connection(reply_fd, readable=False)

    def reply(message) -> None:
        try:
            replies.send(message)
        except OSError:  # the caller stopped listening (it failed or died): it cleans up
            os._exit(0)

    def callers_chunks() -> dict:
        """The chunks the caller encoded for this run's finish; an abort (or the caller
        gone) instead ends the worker, as between jobs."""
        try:
            job = jobs.recv()
        except (EOFError, OSError):
            job = ("abort",)
        if job[0] != "encoded":
            asm._close(failed=True)
            os._exit(0)  # the caller removes the file
        return job[1]

    import h5py  # noqa: F401 (imported before "ready": the first run's open needs it)

    import simcore.io.h5chunks  # noqa: F401
    import simcore.io.trajectory  # noqa: F401

    reply(("ready",))
    asm, failed = None, False
    crcs, known = np.zeros(256, np.uint32), 0  # grown by doubling: no copy of all per feed
    while True:
        try:
            job = jobs.recv()
        except (EOFError, OSError):  # the caller died, or let its idle worker go
            job = ("abort",)
        if job[0] == "open":
            part, out, fmt, attrs, layout = job[1:]
            asm = Assembler(part, out, fmt, attrs=attrs, state_layout=layout)
            asm.job_waiting = lambda: jobs.poll(0)
            asm.callers_chunks = callers_chunks
            failed, known = False, 0
            continue
        if job[0] == "encoded":  # after a failed finish (a good one reads it itself)
            continue
        if job[0] == "abort" or asm is None:
            if not failed and asm is not None:
                asm._close(failed=True)
            os._exit(0)  # the caller removes the file; a failed handle is never closed
        if failed:
            continue
        new = np.frombuffer(job[2], np.uint32)
        crcs = grown(crcs, known + len(new))
        crcs[known:known + len(new)] = new
        known += len(new)
        asm._run((job[0], job[1], crcs[:known], *job[3:]))
        if asm._error is not None:
            reply(("error", _encode(asm._error)))
            failed = True
        elif job[0] == "finish":
            asm = None  # idle until the next run's "open"
            reply(("done",))


def _encode(exc: BaseException) -> tuple:
    """An exception as plain values, for the pipe back to the caller."""
    if isinstance(exc, DamagedLogError):
        return ("damaged", str(exc))
    if isinstance(exc, UserInputError):
        return ("input", str(exc))
    if isinstance(exc, OSError):
        return ("os", exc.errno, exc.strerror, str(exc))
    if isinstance(exc, RuntimeError):
        return ("runtime", str(exc))
    return ("bug", "".join(traceback.format_exception(exc)))


def _decode(value: tuple) -> BaseException:
    kind = value[0]
    if kind == "damaged":
        return DamagedLogError(value[1])
    if kind == "input":
        return UserInputError(value[1])
    if kind == "os":
        return OSError(value[1], value[2]) if value[1] is not None else OSError(value[3])
    if kind == "runtime":
        return RuntimeError(value[1])
    return AssemblerFailure(f"The process writing the NetCDF file failed:\n{value[1]}")


def _formats() -> dict:
    from simcore.io.trajectory import FORMATS

    return FORMATS


def _nc_value(value):
    from simcore.io.trajectory import _json_attr, _nc_attr

    return _nc_attr(_json_attr(value))
