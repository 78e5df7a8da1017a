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
                # the same stream as ours up to ISA-L's choice of matches (h5chunks.py)
                assert zlib.decompress(stored) == zlib.decompress(
                    encode_chunk(values[k:k + per_chunk], True, True)), (name, k)
                np.testing.assert_array_equal(
                    _unshuffle(zlib.decompress(stored), dset.dtype, (per_chunk, *dset.shape[1:])),
                    values[k:k + per_chunk])
    np.testing.assert_array_equal(frames["coordinates"][0, :, 2], 0.0)  # 2D: z = 0


def _chunk_bytes(path) -> dict:
    """Every stored chunk of every dataset (padding included), by dataset and offset,
    inflated where deflated: ISA-L's stream for given bytes can differ between threads
    (simcore/io/h5chunks.py), the bytes it decodes to cannot."""
    stored = {}
    with h5py.File(path) as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.chunks:
                deflated = obj.compression == "gzip"
                for i in range(obj.id.get_num_chunks()):
                    offset = obj.id.get_chunk_info(i).chunk_offset
                    raw = obj.id.read_direct_chunk(offset)[1]
                    stored[name, offset] = zlib.decompress(raw) if deflated else raw
        f.visititems(visit)
    return stored


def test_chunks_encoded_before_the_file_exists_are_the_appenders_own(tmp_path):
    """encode_frames (no file) + write_encoded store the chunks append + finish store; a
    variable whose layout differs from the one encoded for (here: its fill value) is
    encoded again for its own, and one never encoded goes in from its columns."""
    from simcore.io.h5chunks import encode_frames

    pos = np.arange(10 * 4 * 3, dtype="f4").reshape(10, 4, 3)
    energy = np.linspace(0.0, 1.0, 10)
    step = np.arange(10, dtype="i4")
    columns = {"pos": pos, "energy": energy, "step": step}

    def create(path):
        f = h5py.File(path, "w")
        f.create_dataset("pos", shape=(0, 4, 3), maxshape=(None, 4, 3), dtype="f4",
                         chunks=(3, 4, 3), shuffle=True, compression="gzip", fillvalue=-1)
        f.create_dataset("energy", shape=(0,), maxshape=(None,), dtype="f8", chunks=(4,),
                         shuffle=True, compression="gzip", fillvalue=7.0)
        f.create_dataset("step", shape=(0,), maxshape=(None,), dtype="i4", chunks=(8,))
        return f, FrameAppender(f, ["pos", "energy", "step"])

    f, frames = create(tmp_path / "appended.h5")
    frames.append(columns, 1)
    frames.finish(1)
    f.close()
    f, frames = create(tmp_path / "ahead.h5")
    layouts = frames.layouts()
    assert layouts["pos"] == (3, (True, True), np.float32(-1).tobytes(), "<f4")
    wrong = {**layouts, "energy": (4, (True, True), np.float64(0).tobytes(), "<f8")}
    encoded = encode_frames({k: columns[k] for k in ("pos", "energy")},
                            {k: wrong[k] for k in ("pos", "energy")}, threads=2)
    frames.write_encoded(encoded, columns, 2)
    frames.finish(2)
    f.close()
    assert _chunk_bytes(tmp_path / "ahead.h5") == _chunk_bytes(tmp_path / "appended.h5")
    with h5py.File(tmp_path / "ahead.h5") as f:
        np.testing.assert_array_equal(f["pos"][...], pos)
        np.testing.assert_array_equal(f["energy"][...], energy)
        np.testing.assert_array_equal(f["step"][...], step)


@pytest.mark.parametrize("compression", ["zlib", "none"])
def test_a_file_created_while_its_chunks_are_encoded_is_the_one_made_after(tmp_path,
                                                                           compression):
    """After the last step the writer creates the file on one thread while the others
    encode the chunks (simcore.io.assembler): the layouts it predicts from the schema are
    the file's, and the file's chunks are those of the one-thread writer, which encodes
    after creating."""
    from simcore.io import assembler
    from simcore.io.trajectory import frame_chunk_layouts

    kw = dict(steps=300, write_every=10, overwrite=True, quiet=True,
              overrides={"n": 300, "compression": compression})
    made = {}
    calls = []
    original = assembler.Assembler._open_while_encoding

    def spy(self, *args, **kwargs):
        calls.append(frame_chunk_layouts(args[0].schema))
        original(self, *args, **kwargs)
        made_layouts = self._frames.layouts()
        assert all(made_layouts[k] == v for k, v in calls[-1].items())

    for threads in (1, 2):
        calls.clear()

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(assembler, "BACKGROUND", False)  # assembled here, after the last step
            mp.setattr(assembler, "usable_cores", lambda n=threads: list(range(n)))
            mp.setattr(assembler.Assembler, "_open_while_encoding", spy)
            out = simcore.run("couzin", out=tmp_path / f"t{threads}.nc", **kw)
        assert len(calls) == (threads > 1)
        made[threads] = _chunk_bytes(out)
    assert made[1] == made[2] and len(made[1]) > 5
