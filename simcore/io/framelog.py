"""The crash-safe frame log: the only place a running simulation writes its frames.

A run never writes its NetCDF file incrementally (an HDF5 file is not crash-consistent:
a kill between two checkpoints can leave a torn chunk index, and compressed chunks that
span a checkpoint are rewritten after it). Instead frames go to ``OUT.part``, an
append-only file of fixed-size records, and the NetCDF file is assembled from it once,
when the run is complete (:func:`simcore.io.trajectory.assemble`).

Layout of ``OUT.part`` (little-endian)::

    header   b"SIMCORE-FRAMELOG" | u32 version | u64 json length | JSON schema | zero pad
             (padded to a multiple of 4096 bytes)
    record k (k = 0, 1, ...), each ``record_size`` bytes at header + k * record_size:
             the frame's variables in schema order | u32 CRC-32 of those bytes | zero pad

Why this is crash-safe:

* a byte of a record is written once, by an append at the end of the file, and never
  rewritten; the header is written before the first frame;
* a checkpoint first fsyncs the log and only then records how many frames it covers and
  the CRC-32 of each (:mod:`simcore.io.checkpoint`); a kill or power loss at any instant
  leaves every counted frame on disk, and at worst a torn tail after them;
* ``--resume`` verifies every counted frame against the checkpoint's checksums,
  truncates the tail and appends from there; assembling the NetCDF file verifies them again.

Frames are buffered in memory (at most :data:`BUFFER_BYTES`, or the ``buffer_frames`` a
run flushes after) and written in blocks, so a frame costs one copy, not a file-system call.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from simcore._errors import UserInputError

try:  # ISA-L's CRC-32: the same values as zlib's, ~3x faster on x86-64 (9.3 vs 2.9 GB/s)
    from isal.isal_zlib import crc32
except ImportError:
    from zlib import crc32

MAGIC = b"SIMCORE-FRAMELOG"
VERSION = 1
_PREFIX = struct.Struct("<16sIQ")
_ALIGN = 4096
BUFFER_BYTES = 32 * 2**20  # frames held in memory before a block write


class DamagedLogError(UserInputError):
    """The partial file cannot be used as it is (torn header, wrong schema, bad checksum)."""


#: the largest record NumPy can describe (a structured dtype's size is a C int)
MAX_RECORD_BYTES = 2**31 - 1


def record_size(fields: list[tuple[str, str, tuple[int, ...]]]) -> int:
    """Bytes of :func:`record_dtype`'s record, computed without making it (frames larger
    than :data:`MAX_RECORD_BYTES` cannot be made)."""
    payload = sum(np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
                  for _, dtype, shape in fields)
    return (payload + 4 + 7) // 8 * 8


def record_dtype(fields: list[tuple[str, str, tuple[int, ...]]]) -> np.dtype:
    """The packed record of one frame: the fields in order, a u32 CRC, padding to 8 bytes."""
    names, formats, offsets, at = [], [], [], 0
    for name, dtype, shape in fields:
        dt = np.dtype(dtype).newbyteorder("<")
        names.append(name)
        formats.append((dt, tuple(shape)) if shape else dt)
        offsets.append(at)
        at += dt.itemsize * int(np.prod(shape, dtype=np.int64))
    names.append("crc32")
    formats.append(np.dtype("<u4"))
    offsets.append(at)
    at += 4
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": (at + 7) // 8 * 8})


def payload_size(dtype: np.dtype) -> int:
    """Bytes of a record covered by its checksum (everything before the CRC field)."""
    return dtype.fields["crc32"][1]


def grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` if it holds ``size`` elements, else a longer copy (at least twice as long,
    zeros after its values): appending one at a time then copies each value O(1) times."""
    if size <= len(array):
        return array
    bigger = np.zeros(max(size, 2 * len(array)), array.dtype)
    bigger[:len(array)] = array
    return bigger


def _write_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class FrameLogWriter:
    """Append frames to a frame log; see the module docstring.

    ``schema`` is JSON-able: ``{"fields": [[name, dtype, shape], ...], ...}`` plus any
    metadata the reader needs (global attributes, variable attributes). Use
    :meth:`create` for a new log and :meth:`reopen` to continue a verified one.
    """

    def __init__(self, path: Path, fd: int, schema: dict, header_size: int, n_frames: int,
                 crcs: np.ndarray, buffer_frames: int | None = None):
        self.path = path
        self.schema = schema
        self.dtype = record_dtype([tuple(f) for f in schema["fields"]])
        self._fd = fd
        self._header = header_size
        self._payload = payload_size(self.dtype)
        #: frames held in memory before a write (settable before the first append); no more
        #: than a run flushes after: a fresh 32 MiB buffer costs 10-60 ms of memset and page
        #: faults in a process that ran before (glibc then reuses heap memory for it)
        self.buffer_frames = max(1, min(BUFFER_BYTES // self.dtype.itemsize,
                                        buffer_frames or BUFFER_BYTES))
        self._buffer = None  # allocated by the first append
        self._buffered = 0
        self.n_written = n_frames  # frames already in the file
        # every appended frame's CRC-32, in an array grown by doubling: the run hands the
        # worker the new ones at every chunk, which a list made O(frames) each time
        self._crcs = np.zeros(max(256, 2 * len(crcs)), np.uint32)
        self._crcs[:len(crcs)] = crcs

    @classmethod
    def create(cls, path: str | Path, schema: dict,
               buffer_frames: int | None = None) -> "FrameLogWriter":
        """Create ``path`` (which must not exist) with ``schema``. Not fsynced here: the
        first checkpoint fsyncs the file and (after its rename) the folder.
        ``buffer_frames``: frames held in memory before a write (default: 32 MiB of them)."""
        path = Path(path)
        text = json.dumps(schema, sort_keys=True).encode()
        header = _PREFIX.pack(MAGIC, VERSION, len(text)) + text
        header += b"\0" * (-len(header) % _ALIGN)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, header, 0)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return cls(path, fd, schema, len(header), 0, np.zeros(0, np.uint32), buffer_frames)

    @classmethod
    def reopen(cls, path: str | Path, crcs: np.ndarray,
               buffer_frames: int | None = None) -> "FrameLogWriter":
        """Continue the log at ``path`` after its first ``len(crcs)`` frames, which must
        match ``crcs``; everything after them (a torn tail) is cut off."""
        reader = FrameLogReader(path)
        bad = reader.first_bad_frame(crcs)
        if bad is not None:
            raise DamagedLogError(reader.damage_message(bad, len(crcs)))
        reader.close()
        fd = os.open(path, os.O_RDWR)
        os.ftruncate(fd, reader.header_size + len(crcs) * reader.dtype.itemsize)
        os.fsync(fd)
        return cls(Path(path), fd, reader.schema, reader.header_size, len(crcs), crcs,
                   buffer_frames)

    @property
    def n_frames(self) -> int:
        """Frames appended so far (written or still buffered)."""
        return self.n_written + self._buffered

    @property
    def crcs(self) -> np.ndarray:
        """CRC-32 of every frame appended so far (call after :meth:`flush`)."""
        crcs = self._crcs[:self.n_frames]
        crcs.flags.writeable = False  # a view: later appends leave its frames alone
        return crcs

    def append(self, variables: dict[str, np.ndarray]) -> None:
        """Buffer one frame (``variables`` holds every field of the schema)."""
        self.append_frames(variables, 1)

    def append_frames(self, variables: dict[str, np.ndarray], count: int) -> None:
        """Buffer ``count`` frames: each field's value with a leading axis of ``count``
        (one per frame) or without it (the same in every frame)."""
        if self._buffer is None:
            self._buffer = np.zeros(self.buffer_frames, dtype=self.dtype)
            # a column view per field and the records as bytes: no per-frame slicing of
            # the structured array (3x faster for small frames)
            self._columns = [(name, self._buffer[name]) for name in self.dtype.names[:-1]]
            self._crc_column = self._buffer["crc32"]
            self._records = self._buffer.view(np.uint8).reshape(len(self._buffer), -1)
        self._crcs = grown(self._crcs, self.n_frames + count)
        done = 0
        while done < count:
            if self._buffered == len(self._buffer):
                self.flush()
            k = self._buffered
            c = min(count - done, len(self._buffer) - k)
            for name, column in self._columns:
                value = variables[name]
                column[k:k + c] = value[done:done + c] if np.ndim(value) == column.ndim else value
            for j in range(k, k + c):
                crc = crc32(self._records[j, :self._payload])
                self._crc_column[j] = crc
                self._crcs[self.n_frames + j - k] = crc
            self._buffered += c
            done += c

    def flush(self) -> None:
        """Write the buffered frames to the file (one system call per block)."""
        if not self._buffered:
            return
        offset = self._header + self.n_written * self.dtype.itemsize
        _write_all(self._fd, self._buffer[:self._buffered], offset)
        self.n_written += self._buffered
        self._buffered = 0

    def sync(self) -> None:
        """Flush and fsync: every appended frame is on disk when this returns."""
        self.flush()
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file without writing buffered frames (call :meth:`sync` first)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FrameLogReader:
    """Read a frame log (also while a run appends to it); records as a read-only memmap."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                prefix = fh.read(_PREFIX.size)
                if len(prefix) < _PREFIX.size:
                    raise DamagedLogError(self._torn())
                magic, version, length = _PREFIX.unpack(prefix)
                if magic != MAGIC:
                    raise DamagedLogError(
                        f"{self.path} is not a simcore partial trajectory (no frame-log header); "
                        "it may come from an older simcore version. Rerun with --overwrite to "
                        "start over.")
                if version != VERSION:
                    raise DamagedLogError(
                        f"{self.path} was written by an incompatible simcore version (frame log "
                        f"v{version}, this simcore reads v{VERSION}); rerun with --overwrite.")
                text = fh.read(length)
            self.schema = json.loads(text)
        except OSError as exc:
            raise UserInputError(f"Cannot read {self.path}: {exc.strerror or exc}.") from None
        except (ValueError, UnicodeDecodeError):
            raise DamagedLogError(self._torn()) from None
        self.dtype = record_dtype([tuple(f) for f in self.schema["fields"]])
        self.header_size = _PREFIX.size + length + (-(_PREFIX.size + length) % _ALIGN)
        size = self.path.stat().st_size
        self.n_complete = max(0, (size - self.header_size) // self.dtype.itemsize)
        self._records = None

    def _torn(self) -> str:
        return (f"The partial file {self.path} is damaged: its header is incomplete (the run "
                "was killed while creating it). No frame was checkpointed; rerun with "
                "--overwrite to start over.")

    def records(self, n: int | None = None) -> np.ndarray:
        """The first ``n`` records (default: every complete one) as a read-only memmap."""
        n = self.n_complete if n is None else min(n, self.n_complete)
        if n == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.header_size,
                         shape=(n,))

    def first_bad_frame(self, crcs: np.ndarray, start: int = 0) -> int | None:
        """Index of the first of the frames ``start .. len(crcs)-1`` that is missing or
        whose bytes fail its checksum (the record's own and ``crcs``), else None."""
        crcs = np.asarray(crcs, dtype=np.uint32)
        if self.n_complete < len(crcs):
            missing = self.n_complete
        else:
            missing = None
        records = self.records(len(crcs))
        payload = payload_size(self.dtype)
        block = max(1, BUFFER_BYTES // self.dtype.itemsize)
        for b0 in range(start, len(records), block):
            chunk = np.ascontiguousarray(records[b0:b0 + block])
            raw = chunk.view(np.uint8).reshape(len(chunk), -1)
            # both checksums as Python ints, read once per block (a field view and a NumPy
            # scalar per frame cost more than the CRC of a small frame)
            counted = crcs[b0:b0 + len(chunk)].tolist()
            own = chunk["crc32"].tolist()
            for i in range(len(chunk)):
                crc = crc32(raw[i, :payload])
                if crc != counted[i] or crc != own[i]:
                    return b0 + i
        return missing

    def damage_message(self, bad: int, counted: int) -> str:
        """What was lost and how to go on, for frame ``bad`` of ``counted`` checkpointed."""
        return (
            f"The partial file {self.path} is damaged: frame {bad} of the {counted} frames its "
            f"checkpoint covers is missing or fails its checksum (frames 0..{bad - 1} are "
            f"intact; {counted - bad} checkpointed frame(s) lost). A frame is never rewritten "
            "after its checkpoint, so the file was changed or truncated by something else "
            "(a disk error, another program). It cannot be resumed: rerun with --overwrite to "
            "start over (the run is deterministic and will write the same frames).")

    def close(self) -> None:
        """Drop the memmap (kept for symmetry with the writer)."""
        self._records = None


def is_frame_log(path: str | Path) -> bool:
    """True if ``path`` starts with the frame-log magic bytes."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False
