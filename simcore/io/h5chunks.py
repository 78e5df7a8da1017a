"""Whole chunks of a NetCDF-4 variable, compressed here and written straight into the file.

netCDF-C compresses a chunk with zlib (deflate) after HDF5's byte shuffle, at ~30 MB/s
on a 2017 server core: for the hard discs' float32 frames that is as long as the
simulation itself. The same two filters applied here, with ISA-L's deflate (the
``isal`` package, ~190-250 MB/s at level 2 and files no larger than zlib's level 1,
measured on simcore's frames in benchmarks/RESULTS.md), and the result handed to HDF5
with ``H5Dwrite_chunk`` (h5py's ``write_direct_chunk``) give the same file at a sixth
of the cost. The bytes are a standard zlib stream in the filter pipeline the variable
declares (shuffle, then deflate), so every HDF5/netCDF-C reader decodes them as usual;
tests/test_h5chunks.py decodes them with Python's own zlib too.

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

    def __init__(self, dset):
        self.dset, self.codec = dset, chunk_codec(dset)
        self.per_chunk = dset.chunks[0] if dset.chunks else 0
        self.fill = dset.fillvalue  # read now: h5py asks HDF5 each time (~35 us)
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
        whole = len(frames) // self.per_chunk * self.per_chunk
        end = self.written + (len(frames) if final else whole)
        self.dset.resize(end, axis=0)
        chunks = []
        for k in range(0, end - self.written, self.per_chunk):
            part = frames[k:k + self.per_chunk]
            if len(part) < self.per_chunk:  # the last chunk: padded (never read)
                padded = np.full((self.per_chunk, *frames.shape[1:]), self.fill,
                                 dtype=self.dset.dtype)
                padded[:len(part)] = part
                part = padded
            chunks.append(((self.written + k,) + (0,) * (frames.ndim - 1), part))
        rest = frames[end - self.written:]
        self.pending = [rest] if len(rest) else []
        self.written = end
        return chunks


class FrameAppender:
    """Append frames to the frame-axis variables ``names`` of an open, writable h5py file
    (frame 0 first, every variable the same frames); :meth:`finish` writes what waits.

    ``threads`` (for each call) encodes the chunks of that call on that many threads:
    ISA-L's deflate and NumPy's copies release the GIL (1.5x on 2 threads, measured),
    for a caller that has idle cores; HDF5 gets the chunks in order, on this thread."""

    def __init__(self, h5file, names):
        self._variables = [_Variable(h5file[name]) for name in names]
        self.names = list(names)

    def append(self, columns, threads: int = 1) -> None:
        """``columns[name]``: the next frames of each variable (arrays, frame axis first)."""
        self._write([(variable, chunk) for name, variable in zip(self.names, self._variables)
                     for chunk in variable.take(columns[name])], threads)

    def finish(self, threads: int = 1) -> None:
        """Write every waiting frame (last chunks padded with the fill value)."""
        self._write([(variable, chunk) for variable in self._variables
                     for chunk in variable.take_rest()], threads)

    @staticmethod
    def _write(chunks, threads: int) -> None:
        def encode(item):
            variable, (_, part) = item
            return encode_chunk(part, *variable.codec)

        if threads > 1 and len(chunks) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(threads, len(chunks))) as pool:
                encoded = pool.map(encode, chunks)
                for (variable, (offset, _)), data in zip(chunks, encoded):
                    variable.dset.id.write_direct_chunk(offset, data)
        else:
            for item in chunks:
                item[0].dset.id.write_direct_chunk(item[1][0], encode(item))
