"""The NetCDF trajectory written from the frame log, while the run goes on.

A run's frames go to the crash-safe frame log (:mod:`simcore.io.framelog`); the NetCDF
file is made from it. Compressing and writing it costs about as much as a cheap
simulation itself (zlib at 40-80 MiB/s), so instead of doing it all after the last step,
:class:`Assembler` in ``background`` mode writes each whole chunk of frames into
``OUT.tmp`` in a worker thread as soon as the log holds it, overlapping with the kernels
(which release the GIL). At the end only the last partial chunk, the final state and the
attributes remain.

Nothing about crash safety changes: ``OUT.tmp`` is a by-product, never read back; a
killed or interrupted run removes it (or leaves it to be replaced), and ``--resume``
assembles again from the checkpointed log. Every frame is checked against its CRC-32
before it is written, as the end-of-run assembly did. Only the worker thread touches the
NetCDF file (netCDF-C is not thread-safe), and the file's values are those of a
one-shot assembly bit for bit: the same frames, in the same chunk-aligned blocks.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Callable, Mapping

import netCDF4
import numpy as np

from simcore._errors import UserInputError
from simcore.io.framelog import DamagedLogError, FrameLogReader
from simcore.io.write_errors import disk_full_error, is_space_error

_BLOCK_BYTES = 16 * 2**20  # frames per write call: whole chunks, about this many bytes
#: runs write OUT.tmp in the background (False: all of it after the last step, as before;
#: benchmarks/store.py measures both)
BACKGROUND = True


class Assembler:
    """Write the NetCDF file ``out`` from the frame log ``part``.

    ``feed(n, crcs)`` says that the log holds frames 0..n-1 (flushed) with checksums
    ``crcs``; :meth:`finish` writes what remains, the final state and the attributes,
    closes and fsyncs the file. With ``background=True`` (``netcdf4`` format only: an
    AMBER file's layout depends on every frame's cell) the writes happen in a worker
    thread; :meth:`abort` stops it and removes the file.
    """

    def __init__(self, part: str | Path, out: str | Path, fmt: str, background: bool = False):
        self.part, self.out, self.fmt = Path(part), Path(out), fmt
        self.background = background and BACKGROUND and fmt == "netcdf4"
        self.written = 0  # frames in the NetCDF file
        self._n_final: int | None = None
        self.finished = False  # finish() returned: the file is complete
        self._ds = None
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = None
        if self.background:
            self._thread = threading.Thread(target=self._work, name="simcore-assembler",
                                            daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ the caller's side
    def feed(self, n_frames: int, crcs: np.ndarray) -> None:
        """Frames 0..n_frames-1 are in the log; write their whole chunks (background only)."""
        if self.background:
            self._raise_worker_error()
            self._queue.put(("frames", n_frames, np.asarray(crcs, np.uint32)[:n_frames].copy()))

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
        job = ("finish", n_frames, np.asarray(crcs, np.uint32)[:n_frames].copy(), attrs,
               final_state)
        if self.background:
            self._queue.put(job)
            if while_writing is not None:
                while_writing()  # if it raises, the caller's abort() stops the worker
            self._thread.join()
        else:
            if while_writing is not None:
                while_writing()
            self._run(job)
        self._raise_worker_error()
        self.finished = True

    def abort(self) -> None:
        """Stop the worker (if any), drop the unfinished file. Safe to call more than once."""
        if self.finished:
            return
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(("abort",))
            self._thread.join()
        self._close(failed=True)
        self.out.unlink(missing_ok=True)

    # ------------------------------------------------------------------ the worker's side
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job[0] == "abort" or self._error is not None:
                return
            self._run(job)
            if job[0] == "finish":
                return

    def _run(self, job) -> None:
        try:
            if job[0] == "frames":
                self._write(job[1], job[2], final=False)
            else:
                _, n_frames, crcs, attrs, final_state = job
                self._n_final = n_frames
                opened_before = self._ds is not None
                self._write(n_frames, crcs, final=True, final_state=final_state, attrs=attrs)
                if opened_before:
                    for key, value in (attrs or {}).items():
                        self._ds.setncattr(key, _nc_value(value))
                self._close(failed=False)
                fd = os.open(self.out, os.O_RDONLY)
                try:
                    os.fsync(fd)  # the folder is fsynced by the caller, after its rename
                finally:
                    os.close(fd)
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            self._error = exc

    def _open(self, reader: FrameLogReader, records, attrs) -> None:
        from simcore.io.trajectory import _define, _json_attr, has_periodic_axis

        # AMBER files of a system without a periodic axis have no cell variables (the
        # AMBER convention; MDAnalysis cannot read an all-zero cell); netcdf4 files keep
        # them with zeros for the non-periodic axes (ASE needs them).
        self.cell = self.fmt != "amber" or has_periodic_axis(records["cell_lengths"])
        self.schema = dict(reader.schema)
        self.schema["attrs"] = {**self.schema["attrs"],
                                **{k: _json_attr(v) for k, v in (attrs or {}).items()}}
        self.dtype = reader.dtype
        self._ds = netCDF4.Dataset(self.out, "w", format=_formats()[self.fmt])
        _define(self._ds, self.schema, self.fmt, cell=self.cell)
        self.names = [name for name, _, _ in self.schema["fields"]
                      if self.cell or name not in ("cell_lengths", "cell_angles")]

    def _write(self, n_frames: int, crcs: np.ndarray, final: bool, final_state=None,
               attrs=None) -> None:
        from simcore.io.trajectory import _frames_per_chunk, write_state

        reader = FrameLogReader(self.part)
        per_chunk = _frames_per_chunk(reader.schema)
        end = n_frames if final else n_frames // per_chunk * per_chunk
        if end <= self.written and not final:
            return
        bad = reader.first_bad_frame(crcs[:end], start=self.written)
        if bad is not None:
            raise DamagedLogError(reader.damage_message(bad, n_frames))
        records = reader.records(end)
        if self._ds is None:
            self._open(reader, records, attrs)
        block = per_chunk * max(1, _BLOCK_BYTES // max(1, per_chunk * self.dtype.itemsize))
        ds = self._ds
        for k0 in range(self.written, end, block):
            chunk = np.asarray(records[k0:min(end, k0 + block)])
            k1 = k0 + len(chunk)
            for name in self.names:
                ds[name][k0:k1] = np.ascontiguousarray(chunk[name])
            ds["frame"][k0:k1] = np.arange(k0, k1, dtype=np.int32)
            if self.cell:
                ds["cell_angles"][k0:k1] = np.full((k1 - k0, 3), 90.0)
            self.written = k1
        if not final and end > 0:
            # HDF5 keeps written chunks in its cache and compresses them only when they
            # leave it (at the latest when the file closes): flush them now, in this thread
            ds.sync()
        if final and final_state is not None:
            write_state(ds, final_state)

    def _close(self, failed: bool) -> None:
        if self._ds is None:
            return
        ds, self._ds = self._ds, None
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
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(("abort",))
            self._thread.join()
        if isinstance(exc, (DamagedLogError, UserInputError)) or not isinstance(
                exc, (OSError, RuntimeError)):
            self.abort()
            raise exc
        if self._ds is not None:
            from simcore.io.trajectory import FAILED_HANDLES

            FAILED_HANDLES.append(self._ds)
            self._ds = None
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


def _formats() -> dict:
    from simcore.io.trajectory import FORMATS

    return FORMATS


def _nc_value(value):
    from simcore.io.trajectory import _json_attr, _nc_attr

    return _nc_attr(_json_attr(value))
