"""``simcore export FILE --to gsd|extxyz|lammpstrj -o OUT``: a trajectory in the native
format of HOOMD/freud (GSD), ASE/OVITO/QUIP (extended XYZ) or LAMMPS (text dump).

Frames are streamed (a block of frames at a time, never the whole file) into a temporary
file that is renamed onto ``OUT`` when complete. Every format gets the positions, the
particle ids (file order), one particle type (:data:`simcore.interop.ELEMENT`), the time
and the integer step (``round(time / time_per_step)``), and the velocities only where the
file has a ``velocities`` variable (Couzin, hard discs; the ABP/AOUP and linear files
hold a ``drift``, which is not exported as a velocity). Units stay model units.

The container is written as each format can honestly state it (docs/interop.md,
"Exporting to GSD, extended XYZ and LAMMPS"):

* **gsd** (HOOMD boxes are periodic on every axis and centred on the origin): a periodic
  axis keeps its period; a wall or open axis gets a period of twice the extent of
  everything on that axis over the whole file (walls included), so that every minimum-
  image distance is the plain distance; 2D models have ``dimensions = 2`` and ``Lz = 0``.
  Positions are shifted by one constant vector so that the box is centred:
  ``x_gsd = x_file - origin``, with ``origin`` in the log entry ``simcore/origin`` and the
  time in ``simcore/time``; ``particles/image`` holds the periodic images where the file
  has them (abp).
* **extxyz**: ``Lattice`` holds the periodic box and the walls, with ``pbc`` true only on
  the periodic axes and ``Origin`` its lower corner (OVITO's key); open and padding axes
  get a zero lattice vector (no Lattice at all when nothing bounds the system).
  ``Time`` and ``Step`` are per-frame keys, velocities the ``velo`` property.
* **lammpstrj**: ``ITEM: BOX BOUNDS`` with LAMMPS's flags: ``pp`` periodic, ``ff`` walls,
  ``ss`` open space (bounds shrink-wrapped around the frame's particles), and the padding
  z of a 2D model as LAMMPS's own 2D convention ``pp -0.5 0.5``; ``ITEM: TIME`` (as
  ``dump_modify time yes`` writes it) precedes each ``ITEM: TIMESTEP``; image flags
  ``ix iy iz`` where the file has them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simcore._errors import UserInputError, bad_paths_are_user_errors

TARGETS = ("gsd", "extxyz", "lammpstrj")
#: bytes of coordinates read per block of frames
_BLOCK_BYTES = 8 * 2**20


@bad_paths_are_user_errors()
def export_trajectory(path: str | Path, out: str | Path, to: str, *,
                      quiet: bool = True) -> Path:
    """Write the trajectory ``path`` (any simcore file, also a running run's ``.part``)
    as ``out`` in the format ``to`` (``"gsd"``, ``"extxyz"`` or ``"lammpstrj"``).

    Lengths and times stay model units. ``out`` is written through ``OUT.part`` and
    renamed when complete (an existing ``out`` is replaced: the CLI refuses it without
    ``--overwrite``). ``quiet=False`` shows a progress bar (frames). Raises
    :class:`UserInputError` for an unreadable input, an unknown format, a missing
    ``gsd`` package or a failed write. Returns ``Path(out)``.
    """
    from simcore.io.atomic import atomic_output
    from simcore.io.trajectory import open_trajectory

    if to not in TARGETS:
        raise UserInputError(f"Unknown export format {to!r}; choose one of {', '.join(TARGETS)}.")
    if to == "gsd":
        try:
            import gsd.hoomd  # noqa: F401
        except ImportError:
            raise UserInputError("Exporting to GSD needs the gsd package: pip install gsd "
                                 "(or pip install 'simcore[interop]').") from None
    out = Path(out)
    with open_trajectory(path) as ds:
        src = _Source(ds, path)
        if src.n_frames == 0:
            raise UserInputError(f"{path} holds no frame yet; there is nothing to export.")
        with atomic_output(out, needed=src.n_frames * src.n_atoms * 3 * 20) as tmp:
            {"gsd": _write_gsd, "extxyz": _write_extxyz,
             "lammpstrj": _write_lammpstrj}[to](src, tmp, quiet)
    return out


class _Source:
    """What the writers need of an open trajectory, read a block of frames at a time."""

    def __init__(self, ds, path):
        from simcore.interop import container
        from simcore.models import get_model

        self.ds = ds
        self.n_frames, self.n_atoms = ds.sizes["time"], ds.sizes["atom"]
        self.ndim = max(1, min(3, ds.simcore.ndim))
        box = container(path)
        # axes beyond the model's dimension are padding, whatever the file says
        self.boundary = [b if d < self.ndim else "none" for d, b in enumerate(box["boundary"])]
        self.lo, self.hi = box["lo"], box["hi"]
        self.has_velocities = "velocities" in ds.variables
        self.has_image = "image" in ds.variables and ds["image"].dims[1:] == ("atom", "spatial")
        model = get_model(ds.simcore.model)
        self.dt_step = float(model.time_per_step(ds.simcore.params))
        itemsize = ds["coordinates"].dtype.itemsize
        self.float_fmt = "%.9g" if itemsize <= 4 else "%.17g"
        self.block = max(1, _BLOCK_BYTES // max(1, self.n_atoms * 3 * itemsize))

    def blocks(self, quiet: bool, names=("coordinates",)):
        """Yield ``(k0, {name: array}, time, step, cell_lengths)`` per block of frames,
        with a progress bar over frames unless ``quiet``."""
        from simcore._progress import progress

        bar = progress(self.n_frames, desc="export", unit="frame", quiet=quiet)
        try:
            for k0 in range(0, self.n_frames, self.block):
                sl = slice(k0, min(self.n_frames, k0 + self.block))
                part = self.ds.isel(time=sl)
                data = {name: np.asarray(part[name].values) for name in names}
                t = np.asarray(part["time"].values, dtype=float)
                cell = np.asarray(part["cell_lengths"].values, dtype=float)
                yield k0, data, t, self.steps(t), cell
                bar.update(sl.stop - sl.start)
        finally:
            bar.close()

    def steps(self, t: np.ndarray) -> np.ndarray:
        """Integer step of each time (``round(t / time_per_step)``)."""
        return np.rint(t / self.dt_step).astype(np.int64)

    def names(self) -> tuple[str, ...]:
        return (("coordinates",) + (("velocities",) if self.has_velocities else ())
                + (("image",) if self.has_image else ()))

    def walls(self, d: int) -> tuple[float, float]:
        return float(self.lo[d]), float(self.hi[d])

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """The smallest and largest coordinate per axis over every frame (one streamed
        pass over the coordinates), widened to the walls where there are walls."""
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for _, data, *_ in self.blocks(True):
            x = data["coordinates"].reshape(-1, 3)
            if len(x):
                lo, hi = np.minimum(lo, x.min(axis=0)), np.maximum(hi, x.max(axis=0))
        for d, b in enumerate(self.boundary):
            if b == "wall":
                w0, w1 = self.walls(d)
                lo[d], hi[d] = min(lo[d], w0), max(hi[d], w1)
        lo[~np.isfinite(lo)] = 0.0
        hi[~np.isfinite(hi)] = 0.0
        return lo, hi


def _periodic_lo(src: _Source, d: int) -> float:
    return float(src.lo[d]) if src.lo is not None else 0.0


# ---------------------------------------------------------------------------- GSD
def _write_gsd(src: _Source, tmp: Path, quiet: bool) -> None:
    import gsd.hoomd

    from simcore.interop import ELEMENT

    lo, hi = src.extent()
    cell0 = np.asarray(src.ds["cell_lengths"].isel(time=0).values, dtype=float)
    origin = np.zeros(3)
    fixed_side = np.zeros(3)
    for d, b in enumerate(src.boundary):
        if b == "periodic":
            origin[d] = _periodic_lo(src, d) + cell0[d] / 2
        elif b != "none":
            origin[d] = (lo[d] + hi[d]) / 2
            # twice the extent: no minimum image ever shortens a distance
            fixed_side[d] = max(2.0 * (hi[d] - lo[d]), 1.0)
    dimensions = 2 if src.ndim <= 2 else 3
    tmp.touch()  # gsd would create it 0640; an existing file keeps the umask's permissions
    with gsd.hoomd.open(name=str(tmp), mode="w") as traj:
        for _, data, t, steps, cell in src.blocks(quiet, src.names()):
            for j in range(len(t)):
                frame = gsd.hoomd.Frame()
                frame.configuration.step = int(steps[j])
                frame.configuration.dimensions = dimensions
                side = np.where([b == "periodic" for b in src.boundary], cell[j], fixed_side)
                if dimensions == 2:
                    side[2] = 0.0
                # a padding axis within HOOMD's dimensions (y of a 1-component linear
                # model) still needs a positive period: every particle sits at 0 there
                side[:dimensions][side[:dimensions] == 0] = 1.0
                frame.configuration.box = [*side, 0.0, 0.0, 0.0]
                frame.particles.N = src.n_atoms
                frame.particles.types = [ELEMENT]
                frame.particles.typeid = np.zeros(src.n_atoms, dtype=np.uint32)
                frame.particles.position = (data["coordinates"][j] - origin).astype(np.float32)
                if src.has_velocities:
                    frame.particles.velocity = data["velocities"][j].astype(np.float32)
                if src.has_image:
                    frame.particles.image = np.rint(data["image"][j]).astype(np.int32)
                frame.log["simcore/time"] = np.array([t[j]], dtype=np.float64)
                frame.log["simcore/origin"] = origin.astype(np.float64)
                traj.append(frame)


# ---------------------------------------------------------------------------- extxyz
def _write_extxyz(src: _Source, tmp: Path, quiet: bool) -> None:
    from simcore.interop import ELEMENT

    props = "species:S:1:pos:R:3" + (":velo:R:3" if src.has_velocities else "") + ":id:I:1"
    ids = np.arange(1, src.n_atoms + 1)
    f = src.float_fmt
    row = " ".join([ELEMENT] + [f] * (6 if src.has_velocities else 3) + ["%d"])
    pbc = " ".join("T" if b == "periodic" else "F" for b in src.boundary)
    bounded = any(b in ("periodic", "wall") for b in src.boundary)
    with open(tmp, "w") as fh:
        for _, data, t, steps, cell in src.blocks(quiet, src.names()):
            for j in range(len(t)):
                lattice, origin = np.zeros(3), np.zeros(3)
                for d, b in enumerate(src.boundary):
                    if b == "periodic":
                        origin[d], lattice[d] = _periodic_lo(src, d), cell[j, d]
                    elif b == "wall":
                        w0, w1 = src.walls(d)
                        origin[d], lattice[d] = w0, w1 - w0
                head = (f'Lattice="{" ".join(repr(float(v)) for v in np.diag(lattice).ravel())}" '
                        f'Origin="{" ".join(repr(float(v)) for v in origin)}" '
                        if bounded else "")
                fh.write(f"{src.n_atoms}\n{head}Properties={props} Time={float(t[j])!r} "
                         f'Step={steps[j]} pbc="{pbc}"\n')
                cols = [data["coordinates"][j].astype(float)]
                if src.has_velocities:
                    cols.append(data["velocities"][j].astype(float))
                cols.append(ids[:, None])
                np.savetxt(fh, np.hstack(cols), fmt=row)


# ---------------------------------------------------------------------------- LAMMPS
def _write_lammpstrj(src: _Source, tmp: Path, quiet: bool) -> None:
    f = src.float_fmt
    columns = "id type x y z"
    fmt = ["%d", "%d", f, f, f]
    if src.has_velocities:
        columns += " vx vy vz"
        fmt += [f, f, f]
    if src.has_image:
        columns += " ix iy iz"
        fmt += ["%d", "%d", "%d"]
    flags = " ".join({"periodic": "pp", "wall": "ff", "open": "ss", "none": "pp"}[b]
                     for b in src.boundary)
    ids = np.arange(1, src.n_atoms + 1)
    with open(tmp, "w") as fh:
        for _, data, t, steps, cell in src.blocks(quiet, src.names()):
            for j in range(len(t)):
                x = data["coordinates"][j].astype(float)
                bounds = []
                for d, b in enumerate(src.boundary):
                    if b == "periodic":
                        lo = _periodic_lo(src, d)
                        bounds.append((lo, lo + cell[j, d]))
                    elif b == "wall":
                        bounds.append(src.walls(d))
                    elif b == "open":
                        bounds.append((float(x[:, d].min()), float(x[:, d].max()))
                                      if len(x) else (0.0, 0.0))
                    else:  # the padding z of a 2D model: LAMMPS's 2D box
                        bounds.append((-0.5, 0.5))
                fh.write(f"ITEM: TIME\n{float(t[j])!r}\nITEM: TIMESTEP\n{steps[j]}\n"
                         f"ITEM: NUMBER OF ATOMS\n{src.n_atoms}\nITEM: BOX BOUNDS {flags}\n")
                fh.write("".join(f"{repr(float(a))} {repr(float(b))}\n" for a, b in bounds))
                fh.write(f"ITEM: ATOMS {columns}\n")
                cols = [ids[:, None], np.ones((src.n_atoms, 1)), x]
                if src.has_velocities:
                    cols.append(data["velocities"][j].astype(float))
                if src.has_image:
                    cols.append(np.rint(data["image"][j]))
                np.savetxt(fh, np.hstack(cols), fmt=fmt)
