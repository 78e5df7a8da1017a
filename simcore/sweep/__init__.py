"""Parameter sweeps: many runs of one model, fanned out serially, over processes or on dask.

A sweep file (TOML) names a model, a base preset and/or config, the parameters held fixed,
the parameters varied and how many seeds per point::

    model = "couzin"
    preset = "dynamic_parallel"      # optional base preset
    # config = "base.toml"           # optional base config, relative to this file
    out = "couzin_sweep"             # output folder, relative to this file (default: file stem)
    seed = 2024                      # root seed; per-run seeds come from SeedSequence.spawn
    seeds_per_point = 2              # replicas per parameter point (dimension ``replica``)
    steps = 600                      # run settings may sit at the top level or in [params]
    write_every = 20

    [params]                         # fixed overrides for every run
    n = 50

    [grid]                           # Cartesian product: one dimension per key
    r_o = [2.0, 5.0, 9.0]
    noise = [0.05, 0.2]

    [zip]                            # paired lists (equal lengths): one dimension, named
    r_a = [16.0, 19.0]               # after the first key, the others are coordinates on it
    speed = [3.0, 4.0]

    # [[points]]                     # or explicit points (dimension ``point``), instead of
    # r_o = 2.0                      # [grid] and [zip]
    # noise = 0.1

The runs are the product of the grid axes, the zip group and the replicas, in row-major
order (replica fastest). Run ``i`` gets the seed drawn from the ``i``-th child of
``numpy.random.SeedSequence(seed).spawn(n_runs)``; its file is ``run-<hash>.nc`` with
``<hash>`` the first 16 hex digits of the SHA-256 of its canonical ``run_parameters`` JSON
(stored in the file too). ``preset`` may itself be varied (a grid or zip key).

The output folder holds the run files and ``manifest.json`` (rewritten atomically as
runs start and finish, at most twice a second): the sweep, its dimensions and, per run,
its parameters, seed, file, state (``pending``, ``running`` — handed to a worker —,
``done``, ``failed``) and error text.
Running the same sweep again skips finished runs, resumes interrupted ones from their
checkpoints (``.part`` + ``.ckpt``) and retries failed ones.

Backends: ``serial`` (this process), ``processes`` (a ``concurrent.futures`` pool started
with ``forkserver`` where available, else ``spawn``), ``dask`` (``dask.distributed``: a
LocalCluster, an existing scheduler ``tcp://HOST:PORT``, or a SLURM/PBS cluster through
dask-jobqueue). Parallel workers run one Numba thread each unless told otherwise.
"""

from __future__ import annotations

from __future__ import annotations

from simcore.sweep._common import BACKENDS, MANIFEST, SweepFailed
from simcore.sweep.cluster import ClusterOptions, job_script
from simcore.sweep.combine import analyze_sweep, is_sweep_folder, open_sweep
from simcore.sweep.manifest import read_manifest
from simcore.sweep.plan import derive_seeds, describe, plan_sweep, run_file_name
from simcore.sweep.run import run_sweep

__all__ = ["run_sweep", "open_sweep", "analyze_sweep", "plan_sweep", "describe", "job_script",
           "ClusterOptions", "SweepFailed", "derive_seeds", "read_manifest", "is_sweep_folder",
           "run_file_name", "BACKENDS", "MANIFEST"]
