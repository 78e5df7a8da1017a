"""Write dewi_metrics_reference.npz: test configurations and the anchor's own metric values.

The values come from running the anchor project's code, dewi-kadita 0.0.4 (PyPI wheel =
github sandyherho/dewi-kadita commit 4217e21): ``dewi_kadita.core.metrics.
compute_oceanic_schooling_index`` for the seven entropies and the OSI, and
``dewi_kadita.core.systems.CouzinSystem.compute_polarization / compute_rotation`` for
P and M. tests/test_schooling.py compares simcore's ``convention="dewi"`` against them.

dewi-kadita must NOT be installed into the project's environment. Produced with:

    python3 -m venv /tmp/dewivenv
    /tmp/dewivenv/bin/pip install dewi-kadita==0.0.4
    /tmp/dewivenv/bin/python tests/data/make_dewi_reference.py

(2026-11-28; dewi-kadita 0.0.4, numpy 2.4.6, scipy 1.17.1, Python 3.11; the versions
used are also stored in the file under ``provenance``.)

Configurations (deterministic, numpy PCG64 seeds below; positions inside [0, L)):
uniform gas, aligned ball, ring mill, aligned ball straddling the periodic corner, a
school heading along +x with tiny noise split evenly over the four (sign y, sign z)
quadrants, and three tiny groups (N = 1, 3, 5) that exercise the anchor's 0.5 branches.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import platform

import numpy as np

OUT = pathlib.Path(__file__).with_name("dewi_metrics_reference.npz")

# Order of the values stored per configuration (simcore variable names).
VALUE_NAMES = (
    "polarization",
    "milling",
    "cohesion_entropy",
    "polarization_entropy",
    "depth_entropy",
    "angular_momentum_entropy",
    "nearest_neighbor_entropy",
    "velocity_correlation_entropy",
    "shape_entropy",
    "osi",
)
ANCHOR_KEYS = {
    "cohesion_entropy": "school_cohesion_entropy",
    "polarization_entropy": "polarization_entropy",
    "depth_entropy": "depth_stratification_entropy",
    "angular_momentum_entropy": "angular_momentum_entropy",
    "nearest_neighbor_entropy": "nearest_neighbor_entropy",
    "velocity_correlation_entropy": "velocity_correlation_entropy",
    "shape_entropy": "school_shape_entropy",
    "osi": "oceanic_schooling_index",
}


def _normalise(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _ball(rng, n, radius):
    """n points uniform in a ball of the given radius, centred on the origin."""
    direction = _normalise(rng.standard_normal((n, 3)))
    return direction * radius * rng.random((n, 1)) ** (1.0 / 3.0)


def _aligned_headings(rng, n, direction, noise):
    mean = _normalise(np.asarray(direction, float))
    return _normalise(mean + noise * rng.standard_normal((n, 3)))


def build_configurations():
    """Return {name: (positions (N, 3), velocities (N, 3), L)}."""
    configs = {}

    rng = np.random.default_rng(20260101)
    L = 25.0
    configs["uniform"] = (
        rng.random((150, 3)) * L,
        1.3 * _normalise(rng.standard_normal((150, 3))),
        L,
    )

    rng = np.random.default_rng(20260102)
    configs["aligned_ball"] = (
        np.mod(L / 2 + _ball(rng, 150, 4.0), L),
        _aligned_headings(rng, 150, [1.0, 2.0, -0.5], 0.15),
        L,
    )

    rng = np.random.default_rng(20260103)
    L_mill, n, radius = 30.0, 200, 6.0
    angle = 2 * np.pi * np.arange(n) / n + 0.1 * rng.standard_normal(n)
    r = radius * (1 + 0.15 * rng.standard_normal(n))
    z = 0.3 * radius * rng.standard_normal(n)
    pos = np.stack([r * np.cos(angle), r * np.sin(angle), z], 1)
    vel = np.stack([-np.sin(angle), np.cos(angle), 0.1 * rng.standard_normal(n)], 1)
    configs["mill"] = (np.mod(L_mill / 2 + pos, L_mill), 0.8 * _normalise(vel), L_mill)

    rng = np.random.default_rng(20260104)
    configs["corner_ball"] = (
        np.mod(_ball(rng, 150, 4.0), L),  # centred on the corner (0, 0, 0)
        _aligned_headings(rng, 150, [0.3, -1.0, 0.4], 0.15),
        L,
    )

    rng = np.random.default_rng(20260105)
    L_x, n = 22.0, 200
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], float)[np.arange(n) % 4]
    tiny = 1e-3 * (0.1 + rng.random((n, 2))) * signs
    vel = np.column_stack([np.ones(n), tiny])
    pos = np.mod(L_x / 2 + _ball(rng, n, 3.0), L_x)
    configs["tiny_noise_x"] = (pos, 1.1 * _normalise(vel), L_x)

    rng = np.random.default_rng(20260106)
    for n in (1, 3, 5):
        configs[f"few_{n}"] = (
            5.0 + 2.0 * rng.random((n, 3)),
            _normalise(rng.standard_normal((n, 3))),
            10.0,
        )
    return configs


def anchor_values(positions, velocities, box):
    from dewi_kadita.core import metrics
    from dewi_kadita.core.systems import CouzinSystem

    system = CouzinSystem(n_fish=len(positions), box_size=box, seed=0)
    system.set_state(positions, velocities)
    values = {"polarization": system.compute_polarization(), "milling": system.compute_rotation()}
    osi = metrics.compute_oceanic_schooling_index(positions, velocities, box)
    for name, key in ANCHOR_KEYS.items():
        values[name] = osi[key]
    every = metrics.compute_all_metrics(positions, velocities, box)  # cross-check P and M
    assert every["polarization"] == values["polarization"]
    assert every["rotation"] == values["milling"]
    return np.array([values[name] for name in VALUE_NAMES], dtype=np.float64)


def main():
    import dewi_kadita
    import scipy

    configs = build_configurations()
    arrays = {}
    for name, (pos, vel, box) in configs.items():
        arrays[f"{name}__positions"] = pos
        arrays[f"{name}__velocities"] = vel
        arrays[f"{name}__box"] = np.float64(box)
        arrays[f"{name}__values"] = anchor_values(pos, vel, box)
    arrays["config_names"] = np.array(list(configs))
    arrays["value_names"] = np.array(VALUE_NAMES)
    arrays["provenance"] = np.array(json.dumps({
        "anchor": f"dewi-kadita {dewi_kadita.__version__} (PyPI)",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "script": "tests/data/make_dewi_reference.py",
    }))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    for name in configs:
        print(name, np.array2string(arrays[f"{name}__values"], precision=4))


if __name__ == "__main__":
    main()
