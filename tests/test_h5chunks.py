"""Chunks compressed by simcore and written straight into the file (simcore/io/h5chunks.py):
the bytes are what HDF5's own shuffle + deflate filters decode, checked against HDF5
itself and against Python's zlib, and a run's file holds exactly those bytes."""

import zlib

import h5py
import netCDF4
import numpy as np
import pytest

import simcore
from simcore.io.h5chunks import FrameAppender, chunk_codec, encode_chunk


def _unshuffle(raw: bytes, dtype, shape) -> np.ndarray:
    """HDF5's shuffle undone: byte k of every element was stored together."""
    dtype = np.dtype(dtype)
    planes = np.frombuffer(raw, np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(shape)


@pytest.mark.parametrize("dtype", ["<f4", "<f8", "<i4"])
def test_encoded_chunk_is_what_hdf5s_filters_store(tmp_path, dtype):
    """HDF5 compresses a chunk itself (shuffle + deflate); ours decompresses with Python's
    zlib to the same shuffled bytes, and HDF5 reads ours back as the values."""
    values = (np.random.default_rng(1).normal(size=(5, 300, 3)) * 1000).astype(dtype)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        theirs = f.create_dataset("theirs", data=values, chunks=values.shape, shuffle=True,
                                  compression="gzip", compression_opts=1)
        ours = f.create_dataset("ours", shape=values.shape, dtype=dtype, chunks=values.shape,
                                shuffle=True, compression="gzip", compression_opts=1)
        assert chunk_codec(ours) == (True, True)
        ours.id.write_direct_chunk((0, 0, 0), encode_chunk(values, True, True))
        _, stored = theirs.id.read_direct_chunk((0, 0, 0))
        shuffled = zlib.decompress(stored)
        assert zlib.decompress(encode_chunk(values, True, True)) == shuffled
        np.testing.assert_array_equal(_unshuffle(shuffled, dtype, values.shape), values)
    with h5py.File(tmp_path / "f.h5") as f:
        np.testing.assert_array_equal(f["ours"][...], values)


def test_codec_only_for_whole_frame_chunks_and_known_filters(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as f:
        kw = dict(shape=(0, 10, 3), maxshape=(None, 10, 3), dtype="f4")
        assert chunk_codec(f.create_dataset("a", chunks=(4, 10, 3), **kw)) == (False, False)
        assert chunk_codec(f.create_dataset("b", chunks=(4, 10, 3), compression="gzip",
                                            **kw)) == (False, True)
        assert chunk_codec(f.create_dataset("c", chunks=(4, 5, 3), **kw)) is None
        assert chunk_codec(f.create_dataset("e", chunks=(4, 10, 3), fletcher32=True,
                                            **kw)) is None
        assert chunk_codec(f.create_dataset("f", chunks=(4, 10, 3), compression="lzf",
                                            **kw)) is None


@pytest.mark.parametrize("threads", [1, 3])
def test_appender_writes_whole_chunks_from_uneven_pieces(tmp_path, threads):
    """Pieces of 2, 4, 1, 3 frames into variables with chunks of 3 and 4 frames (and one
    whose chunks split a frame: h5py's own write); the last chunks are padded; chunks
    encoded on several threads land where they belong."""
    pos = np.arange(10 * 4 * 3, dtype="f4").reshape(10, 4, 3)
    energy = np.linspace(0.0, 1.0, 10)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("pos", shape=(0, 4, 3), maxshape=(None, 4, 3), dtype="f4",
                         chunks=(3, 4, 3), shuffle=True, compression="gzip", fillvalue=-1)
        f.create_dataset("energy", shape=(0,), maxshape=(None,), dtype="f8", chunks=(4,),
                         shuffle=True, compression="gzip")
        f.create_dataset("split", shape=(0, 4, 3), maxshape=(None, 4, 3), dtype="f4",
                         chunks=(2, 2, 3), compression="gzip")
        frames = FrameAppender(f, ["pos", "energy", "split"])
        k = 0
        for n in (2, 4, 1, 3):
            frames.append({"pos": pos[k:k + n], "energy": energy[k:k + n],
                           "split": pos[k:k + n]}, threads)
            k += n
        assert f["pos"].shape[0] == 9 and f["energy"].shape[0] == 8  # whole chunks so far
        assert f["split"].shape[0] == 10
        frames.finish(threads)
    with h5py.File(tmp_path / "f.h5") as f:
        np.testing.assert_array_equal(f["pos"][...], pos)
        np.testing.assert_array_equal(f["energy"][...], energy)
        np.testing.assert_array_equal(f["split"][...], pos)
        _, last = f["pos"].id.read_direct_chunk((9, 0, 0))
        padding = _unshuffle(zlib.decompress(last), "f4", (3, 4, 3))[1:]
        assert np.all(padding == -1)


def test_a_runs_per_atom_chunks_are_ours_and_netcdf_reads_them(tmp_path):
    """Every chunk of a run's coordinates and velocities holds exactly encode_chunk's bytes
    (not HDF5's recompression), and netCDF-C reads the values the run saved."""
    out = tmp_path / "hd.nc"
    simcore.run("harddisc", out=out, overrides={"n": 4000, "t_end": 12.0})
    with netCDF4.Dataset(out) as ds:
        frames = {name: np.asarray(ds[name][:]) for name in ("coordinates", "velocities")}
        n_frames = len(ds.dimensions["frame"])
    with h5py.File(out) as f:
        for name, values in frames.items():
            dset = f[name]
            assert dset.shape[0] == n_frames == len(values)
            per_chunk = dset.chunks[0]
            assert 1 < per_chunk < n_frames  # whole chunks and a partial last one
            for k in range(0, n_frames - per_chunk + 1, per_chunk):
                _, stored = dset.id.read_direct_chunk((k, 0, 0))
                assert stored == encode_chunk(values[k:k + per_chunk], True, True), (name, k)
                np.testing.assert_array_equal(
                    _unshuffle(zlib.decompress(stored), dset.dtype, (per_chunk, *dset.shape[1:])),
                    values[k:k + per_chunk])
    np.testing.assert_array_equal(frames["coordinates"][0, :, 2], 0.0)  # 2D: z = 0
