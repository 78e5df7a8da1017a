"""The main job on built-in defaults (``make demo``): a Couzin torus, its analysis, a figure.

Runs the Couzin 2002 ``torus`` preset (N = 100, 3000 steps), computes the order
parameters, seven entropies and OSI, and draws them with a 3D snapshot; then prints
where everything is. Usage: ``python examples/demo.py [--out FOLDER]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import simcore
from simcore.analysis import summarize
from simcore.analysis.schooling import schooling_indices_from_dataset
from simcore.io.results import write_dataset
from simcore.plotting import save_figure
from simcore.plotting.couzin import plot_school


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    traj, indices_path, figure = folder / "torus.nc", folder / "torus_indices.nc", folder / "torus.png"

    t0 = time.perf_counter()
    print("Running the Couzin 2002 torus preset (N = 100) ...", flush=True)
    simcore.run("couzin", preset="torus", steps=args.steps, seed=1, write_every=10, out=traj,
                overwrite=True, quiet=False)
    with simcore.open_trajectory(traj) as ds:
        indices = schooling_indices_from_dataset(ds)
        write_dataset(indices, indices_path)
        save_figure(plot_school(ds, indices), figure)
    print(summarize(indices))
    print(f"\nDone in {time.perf_counter() - t0:.1f} s (including Numba compilation on first use).")
    print(f"  trajectory: {traj}  (xarray.open_dataset or simcore.open_trajectory)")
    print(f"  indices:    {indices_path}")
    print(f"  figure:     {figure}")


if __name__ == "__main__":
    main()
