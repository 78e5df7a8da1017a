"""Helpers for the MD tools that read simcore files (docs/interop.md).

* :func:`write_topology` writes the minimal PDB topology that MDTraj, MDAnalysis and VMD
  need beside a trajectory (``simcore export FILE --topology top.pdb``);
* :func:`container` reads the container (periodic box or walls) stored in a file;
* :func:`ase_frames` gives ASE ``Atoms`` with the container as the cell and the right
  periodicity flags, for every simcore file (``ase.io.read`` cannot read an AMBER-format
  file without a periodic axis, which has no cell variables).
"""

from __future__ import annotations

import json
from pathlib import Path

import netCDF4
import numpy as np

from simcore.io.trajectory import read_attrs

#: the topology's particles: hydrogen (mass 1.008, the mass ASE also gives them), one
#: residue per particle
ATOM_NAME, RESIDUE_NAME, ELEMENT = "H", "PAR", "H"


def container(path: str | Path) -> dict:
    """The container of a simcore file: ``{"boundary": ("periodic"|"wall"|"open"|"none",) * 3,
    "lo": array(3) | None, "hi": array(3) | None}`` (model length units).

    Files written before these attributes existed fall back to ``cell_lengths``
    (periodic where non-zero, open elsewhere)."""
    attrs = read_attrs(path)
    boundary = str(attrs.get("simcore_boundary", "")).split()
    lo = attrs.get("simcore_box_lo")
    hi = attrs.get("simcore_box_hi")
    if len(boundary) != 3:
        with netCDF4.Dataset(path) as nc:
            cell = (np.asarray(nc["cell_lengths"][0], dtype=float)
                    if "cell_lengths" in nc.variables else np.zeros(3))
        boundary = ["periodic" if c > 0 else "open" for c in cell]
        lo, hi = (np.zeros(3), cell) if cell.any() else (None, None)
    def corner(value):
        if value is None:
            return None
        if isinstance(value, str):
            value = value.split()
        return np.asarray(value, dtype=float).reshape(3)

    return {"boundary": tuple(boundary), "lo": corner(lo), "hi": corner(hi)}


def write_topology(path: str | Path, out: str | Path) -> Path:
    """Write a PDB topology for the trajectory ``path``: one particle per atom (name and
    element H, residue PAR, one residue per particle), with the first frame's positions
    (zeros where they do not fit the PDB columns). Readers take the positions and box
    from the trajectory, so the PDB only fixes the number and order of the particles."""
    read_attrs(path)
    with netCDF4.Dataset(path) as nc:
        n = nc.dimensions["atom"].size
        x = (np.asarray(nc["coordinates"][0], dtype=float) if nc.dimensions["frame"].size
             else np.zeros((n, 3)))
    if not (np.isfinite(x).all() and np.abs(x).max(initial=0.0) < 9999.0):
        x = np.zeros((n, 3))
    out = Path(out)
    lines = [f"REMARK   simcore topology for {Path(path).name}: {n} particles"]
    for i in range(n):
        serial = (i + 1) % 100000
        resseq = (i + 1) % 10000
        lines.append(
            f"ATOM  {serial:5d} {ATOM_NAME:<4s} {RESIDUE_NAME:>3s} A{resseq:4d}    "
            f"{x[i, 0]:8.3f}{x[i, 1]:8.3f}{x[i, 2]:8.3f}{1.0:6.2f}{0.0:6.2f}          "
            f"{ELEMENT:>2s}")
    lines.append("END")
    from simcore.io.atomic import write_text
    from simcore.io.write_errors import output_error

    try:  # atomically: a full disk leaves no truncated PDB behind
        write_text(out, "\n".join(lines) + "\n")
    except OSError as exc:
        raise output_error(out, exc) from None
    return out


def ase_frames(path: str | Path, index: int | slice = slice(None)) -> list:
    """The frames of a simcore file as a list of :class:`ase.Atoms` (``index``: an int or a
    slice of frames).

    The cell is the container: the periodic box, or the walls of a hard-disc box (then
    with ``pbc = False`` on the walled axes); open axes get ASE's shrink-wrapped cell.
    ``atoms.get_velocities()`` is set only for files with a ``velocities`` variable
    (Couzin, hard discs); every other per-atom variable is in ``atoms.arrays``. Positions
    are model lengths (ASE calls them Å).
    """
    import ase

    box = container(path)
    with netCDF4.Dataset(path) as nc:
        n_frames = nc.dimensions["frame"].size
        picks = (range(n_frames)[index] if isinstance(index, slice)
                 else [range(n_frames)[index]])
        per_atom = [name for name, v in nc.variables.items()
                    if v.dimensions[:2] == ("frame", "atom")
                    and name not in ("coordinates", "velocities")]
        out = []
        for k in picks:
            pos = np.asarray(nc["coordinates"][k], dtype=float)
            pbc = np.array([b == "periodic" for b in box["boundary"]])
            cell = np.zeros(3)
            origin = np.zeros(3)
            for d in range(3):
                if box["hi"] is not None and box["boundary"][d] in ("periodic", "wall"):
                    origin[d], cell[d] = box["lo"][d], box["hi"][d] - box["lo"][d]
                elif box["boundary"][d] != "none" and len(pos):
                    origin[d] = pos[:, d].min()
                    cell[d] = pos[:, d].max() - origin[d]
            atoms = ase.Atoms(positions=pos, cell=np.diag(cell), pbc=pbc, celldisp=origin)
            if "velocities" in nc.variables:
                atoms.set_velocities(np.asarray(nc["velocities"][k], dtype=float))
            for name in per_atom:
                atoms.set_array(name, np.asarray(nc[name][k]))
            atoms.info["time"] = float(nc["time"][k])
            atoms.info["simcore_model"] = str(nc.getncattr("simcore_model"))
            out.append(atoms)
    return out


def run_parameters(path: str | Path) -> dict:
    """The run's parameters (the ``run_parameters`` JSON attribute) as a dict."""
    return json.loads(str(read_attrs(path)["run_parameters"]))
