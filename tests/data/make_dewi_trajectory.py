"""Write tests/data/dewi_trajectory_reference.npz: noise-free trajectories of the anchor.

Produced with dewi-kadita 0.0.4 (PyPI wheel = commit 4217e21), numba 0.68, on 2026-11-28:

    python3 -m venv /tmp/dewivenv && /tmp/dewivenv/bin/pip install dewi-kadita==0.0.4
    /tmp/dewivenv/bin/python tests/data/make_dewi_trajectory.py

With noise = 0 the anchor is deterministic given its seed (which seeds its initial
condition), so simcore's rule="dewi" must reproduce these positions and velocities.
Never run in the tests (no network, no anchor install); the test reads the .npz.
"""

import json
from pathlib import Path

import numpy as np
from dewi_kadita.core.solver import CouzinSolver
from dewi_kadita.core.systems import CouzinSystem

CASES = {
    # name: (CouzinSystem kwargs, steps); small N keeps the file small
    "random": (dict(n_fish=40, box_size=12.0, speed=1.2, r_repulsion=1.0, r_orientation=3.0,
                    r_attraction=5.0, max_turn=0.35, noise=0.0, blind_angle=25.0,
                    orientation_weight=1.0, seed=456), 40),
    "torus": (dict(n_fish=40, box_size=25.0, speed=1.0, r_repulsion=1.0, r_orientation=3.0,
                   r_attraction=10.0, max_turn=0.2, noise=0.0, blind_angle=150.0,
                   orientation_weight=0.1, torus_init=True, torus_radius=6.0, seed=42), 40),
}

out = {}
for name, (kw, steps) in CASES.items():
    system = CouzinSystem(**kw)
    result = CouzinSolver(dt=0.1).solve(system, n_steps=steps, save_interval=1, verbose=False)
    out[f"{name}_positions"] = result["positions"]
    out[f"{name}_velocities"] = result["velocities"]
    out[f"{name}_kwargs"] = np.array(json.dumps(dict(kw, steps=steps, dt=0.1)))
np.savez_compressed(Path(__file__).with_name("dewi_trajectory_reference.npz"), **out)
