"""Whole chunks of a NetCDF-4 variable, compressed here and written straight into the file.

netCDF-C compresses a chunk with zlib (deflate) after HDF5's byte shuffle, at ~30 MB/s
on a 2017 server core: for the hard discs' float32 frames that is as long as the
simulation itself. The same two filters applied here, with ISA-L's deflate (the
``isal`` package, ~190-250 MB/s at level 2 and files no larger than zlib's level 1,
measured on simcore's frames in benchmarks/RESULTS.md), and the result handed to HDF5
with ``H5Dwrite_chunk`` (h5py's ``write_direct_chunk``) give the same file at a sixth
of the cost. The bytes are a standard zlib stream in the filter pipeline the variable
declares (shuffle, then deflate), so every HDF5/netCDF-C reader decodes them as usual;
tests/test_h5chunks.py decodes them with Python's own zlib too. ISA-L's stream for given
bytes is not always the same one: it leaves part of its hash table uninitialised
(intel/isa-l#140), so a chunk encoded on another thread or in another process can take
other matches (about 1 in 40 new threads here). Every stream decodes to the same bytes, so
a file's values (what simcore's reproducibility is defined on) never change; its
compressed bytes may.

:class:`FrameAppender` appends frames to a file's frame-axis variables this way: each
variable's frames wait in memory until they fill a chunk (the per-atom variables' chunks
are a few frames, the small per-frame ones' 1024), so every chunk is written once, whole,
in one call (h5py's per-call overhead, not the compression, would otherwise dominate
small frames). Only what the filter pipeline allows is written directly: no filter,
deflate, or shuffle + deflate (netCDF-C's order), in chunks that span every axis but the
first; any other variable goes through h5py's ordinary write (HDF5 compresses it).
"""

from __future__ import annotations

import numpy as np

try:  # ISA-L's deflate: wheels for Linux, macOS and Windows on x86-64 and ARM
    from isal.isal_zlib import compress as _deflate

    DEFLATE_LEVEL = 2  # ISA-L's levels 0-3; 2 compresses like zlib's level 1
except ImportError:  # a platform without a wheel: the standard library's zlib (slower)
    from zlib import compress as _deflate

    DEFLATE_LEVEL = 1

_SHUFFLE, _DEFLATE = 2, 1  # HDF5's filter identifiers (H5Z_FILTER_SHUFFLE, H5Z_FILTER_DEFLATE)
#: chunks of fewer bytes than this are encoded on the calling thread whatever ``threads``
#: says: a pool's start and hand-offs cost more than it saves (two threads against one,
#: random float32 chunks: 0.48 MB 2.26 against 2.21 ms, 0.96 MB 3.10 / 3.23, 1.92 MB
#: 4.20 / 6.61; a hard-disc run's last write, 631 kB mostly padding, 3.5 / 2.4 ms)
POOL_MIN_BYTES = 2**20


def _threads_for(parts, threads: int) -> int:
    """``threads`` for encoding the arrays ``parts``, or 1 where a pool does not pay."""
    if threads <= 1 or len(parts) < 2 or sum(p.nbytes for p in parts) < POOL_MIN_BYTES:
        return 1
    return min(threads, len(parts))


def chunk_codec(dset) -> tuple[bool, bool] | None:
    """(shuffle, deflate) for an h5py dataset whose chunks can be written whole by
    :func:`encode_chunk`, or None: other filters, or chunks that split a frame."""
    if dset.chunks is None or tuple(dset.chunks[1:]) != tuple(dset.shape[1:]):
        return None
    plist = dset.id.get_create_plist()
    filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
    return {(): (False, False), (_DEFLATE,): (False, True),
            (_SHUFFLE, _DEFLATE): (True, True)}.get(filters)


def encode_chunk(values: np.ndarray, shuffle: bool, deflate: bool) -> bytes:
    """The stored bytes of one chunk: HDF5's shuffle (byte k of every element together),
    then a zlib-format deflate stream, as the filters would write them."""
    raw = np.ascontiguousarray(values).view(np.uint8)
    if shuffle and values.dtype.itemsize > 1:
        raw = np.ascontiguousarray(raw.reshape(-1, values.dtype.itemsize).T)
    return _deflate(raw, DEFLATE_LEVEL) if deflate else raw.tobytes()


class _Variable:
    """One frame-axis variable: its dataset, codec, and the frames not yet written."""

    def __init__(self, dset, known: tuple | None = None):
        if known is None:
            known = (chunk_codec(dset), dset.chunks[0] if dset.chunks else 0,
                     dset.fillvalue)  # read now: h5py asks HDF5 each time (~35 us)
        self.dset = dset
        self.codec, self.per_chunk, self.fill = known
        self.written = 0  # frames in the file (or in chunks handed out to be written)
        self.pending: list[np.ndarray] = []  # frames after those, less than a chunk

    def take(self, values: np.ndarray) -> list[tuple[tuple[int, ...], np.ndarray]]:
        """Queue ``values`` (the next frames); return the chunks they complete as
        (offset, frames) pairs, the dataset already resized to hold them (variables not
        written directly go in here, through h5py)."""
        if self.codec is None:
            end = self.written + len(values)
            self.dset.resize(end, axis=0)
            self.dset[self.written:end] = values
            self.written = end
            return []
        self.pending.append(np.asarray(values, dtype=self.dset.dtype))
        if sum(map(len, self.pending)) >= self.per_chunk:
            return self._chunks(final=False)
        return []

    def take_rest(self) -> list[tuple[tuple[int, ...], np.ndarray]]:
        """The chunks of every queued frame, the last one padded with the fill value."""
        return self._chunks(final=True) if self.codec is not None and self.pending else []

    def _chunks(self, final: bool) -> list[tuple[tuple[int, ...], np.ndarray]]:
        frames = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        chunks, end = split_chunks(frames, self.written, self.per_chunk, self.fill, final)
        self.dset.resize(end, axis=0)
        rest = frames[end - self.written:]
        self.pending = [rest] if len(rest) else []
        self.written = end
        return chunks

    @property
    def layout(self) -> tuple | None:
        """What the bytes of its chunks depend on (see :func:`encode_frames`); None if
        they are not written whole."""
        if self.codec is None:
            return None
        return (self.per_chunk, self.codec, np.asarray(self.fill, self.dset.dtype).tobytes(),
                self.dset.dtype.str)


def split_chunks(frames: np.ndarray, start: int, per_chunk: int, fill, final: bool):
    """The whole chunks of ``frames``, which follow frame ``start`` (a multiple of
    ``per_chunk``) of a variable, as (offset, frames) pairs, and the frame count they
    reach; with ``final`` the frames left over make a last chunk padded with ``fill``
    (padding is never read)."""
    whole = len(frames) // per_chunk * per_chunk
    end = start + (len(frames) if final else whole)
    chunks = []
    for k in range(0, end - start, per_chunk):
        part = frames[k:k + per_chunk]
        if len(part) < per_chunk:
            padded = np.full((per_chunk, *frames.shape[1:]), fill, dtype=frames.dtype)
            padded[:len(part)] = part
            part = padded
        chunks.append(((start + k,) + (0,) * (frames.ndim - 1), part))
    return chunks, end


def encode_frames(columns, layouts, threads: int = 1) -> dict:
    """Every frame of each variable ``columns[name]`` encoded in whole chunks as
    :class:`FrameAppender` would write them into a fresh file whose variable has
    ``layouts[name]`` = (frames per chunk, (shuffle, deflate), fill value's bytes, dtype
    string): ``{name: (frames, [(offset, bytes), ...], layout)}`` for
    :meth:`FrameAppender.write_encoded`. Needs no file: a writer encodes while the file
    is being created."""
    items = []
    for name, (per_chunk, codec, fill, dtype) in layouts.items():
        frames = np.asarray(columns[name], dtype=np.dtype(dtype))
        chunks, end = split_chunks(frames, 0, per_chunk, np.frombuffer(fill, frames.dtype)[0],
                                   True)
        items += [(name, end, offset, part, codec) for offset, part in chunks]

    def encode(item):
        return encode_chunk(item[3], *item[4])

    threads = _threads_for([item[3] for item in items], threads)
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            data = list(pool.map(encode, items))
    else:
        data = [encode(item) for item in items]
    ends = {name: 0 for name in layouts}
    chunks: dict = {name: [] for name in layouts}
    for (name, end, offset, _, _), chunk in zip(items, data):
        ends[name] = end
        chunks[name].append((offset, chunk))
    return {name: (ends[name], chunks[name], layout) for name, layout in layouts.items()}


class FrameAppender:
    """Append frames to the frame-axis variables ``names`` of an open, writable h5py file
    (frame 0 first, every variable the same frames); :meth:`finish` writes what waits.

    ``threads`` (for each call) encodes the chunks of that call on that many threads:
    ISA-L's deflate and NumPy's copies release the GIL (1.5x on 2 threads, measured),
    for a caller that has idle cores; HDF5 gets the chunks in order, on this thread."""

    def __init__(self, h5file, names, known: dict | None = None):
        known = known or {}
        self._variables = [_Variable(h5file[name], known.get(name)) for name in names]
        self.names = list(names)

    def facts(self) -> dict:
        """Each variable's (codec, frames per chunk, fill value), read from the file: a
        file of the same layout (:mod:`simcore.io.ncfile`'s templates) has the same, and
        passes them as ``known`` instead of reading them again (~0.2 ms a variable)."""
        return {name: (variable.codec, variable.per_chunk, variable.fill)
                for name, variable in zip(self.names, self._variables)}

    def append(self, columns, threads: int = 1) -> None:
        """``columns[name]``: the next frames of each variable (arrays, frame axis first)."""
        self._write([(variable, chunk) for name, variable in zip(self.names, self._variables)
                     for chunk in variable.take(columns[name])], threads)

    def layouts(self) -> dict:
        """Each variable's chunk layout (:func:`encode_frames`), for those written whole."""
        return {name: variable.layout for name, variable in zip(self.names, self._variables)
                if variable.layout is not None}

    def write_encoded(self, encoded, columns, threads: int = 1) -> None:
        """Write the first frames of every variable: ``encoded[name]`` from
        :func:`encode_frames` where it was made for the variable's :meth:`layouts`, else
        ``columns[name]`` (encoded here); nothing may have been appended before."""
        mine = self.layouts()
        rest = {}
        for name, variable in zip(self.names, self._variables):
            if variable.written or variable.pending:
                raise ValueError("write_encoded() writes a variable's first frames only")
            if name in encoded and encoded[name][2] == mine.get(name):
                end, chunks, _ = encoded[name]
                variable.dset.resize(end, axis=0)
                for offset, data in chunks:
                    variable.dset.id.write_direct_chunk(offset, data)
                variable.written = end
            else:
                rest[name] = columns[name]
        self._write([(variable, chunk) for name, variable in zip(self.names, self._variables)
                     if name in rest for chunk in variable.take(rest[name])], threads)

    def finish(self, threads: int = 1) -> None:
        """Write every waiting frame (last chunks padded with the fill value)."""
        self._write([(variable, chunk) for variable in self._variables
                     for chunk in variable.take_rest()], threads)

    @staticmethod
    def _write(chunks, threads: int) -> None:
        def encode(item):
            variable, (_, part) = item
            return encode_chunk(part, *variable.codec)

        threads = _threads_for([part for _, (_, part) in chunks], threads)
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                encoded = pool.map(encode, chunks)
                for (variable, (offset, _)), data in zip(chunks, encoded):
                    variable.dset.id.write_direct_chunk(offset, data)
        else:
            for item in chunks:
                item[0].dset.id.write_direct_chunk(item[1][0], encode(item))
