"""Model registry. A model module owns its physics and nothing else.

Each model module defines:

``NAME``, ``NDIM``
    registry name and spatial dimension (2D models pad z = 0 in files).
``Params``
    a frozen pydantic model (``extra="forbid"``, constraints on every field).
``PRESETS``, ``PRESET_DOCS``, ``DEFAULT_PRESET``, ``DEFAULT_STEPS``, ``DEFAULT_WRITE_EVERY``
    named parameter sets (they may also set run settings such as ``steps``).
``init_state(params, seed) -> dict[str, ndarray]``
    the initial state (float64 arrays, plus any int arrays the kernel needs).
``advance(state, params, key, step, n_steps)``
    advance the state in place by ``n_steps`` steps; ``step`` is the global index of
    the first step, ``key`` the counter-based RNG key (:mod:`simcore.rng`).
``frame(state, params) -> dict[str, ndarray]``
    the per-frame variables: ``coordinates`` (N, 3), ``velocities`` (N, 3) (unless
    ``HAS_VELOCITIES`` is False),
    ``cell_lengths`` (3,) and the extras named by ``extra_variables``.
``extra_variables(params)``
    ``{name: (dims after 'frame', units, long_name)}``.
``HAS_VELOCITIES`` (optional, default True)
    False for models without particle velocities (overdamped, OU): ``frame`` then has no
    ``velocities`` and the file no AMBER ``velocities`` variable.
``geometry(params)`` (optional)
    global attributes describing the container (``simcore_boundary``, ``simcore_box_lo``,
    ``simcore_box_hi``).
``time_per_step(params)``, ``warnings(params) -> list[str]``.
``state_from_frame(variables, params) -> state`` (optional)
    the inverse of ``frame`` for ``init_from``: a state from one stored frame's variables
    (float64 arrays), checked against ``params``.
``RUN_LENGTH_PARAMS`` (optional)
    model parameters that set the run length (``--extend`` may raise them).
``THREADED`` (optional, default True)
    False for single-threaded kernels: the driver then skips choosing a thread count.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULES = {
    "couzin": "simcore.models.couzin",
    "abp": "simcore.models.active",
    "linear": "simcore.models.linear",
    "harddisc": "simcore.models.harddisc",
}


def box_corner(*xyz) -> str:
    """A box corner as a global attribute (``simcore_box_lo``/``_hi``): three floats as
    text (exact repr; a text attribute compares like the other attributes)."""
    return " ".join(repr(float(v)) for v in xyz)


def model_names() -> list[str]:
    """Names accepted by ``simcore run MODEL``."""
    return list(_MODULES)


def get_model(name: str) -> ModuleType:
    """Import and return the model module registered as ``name`` (KeyError if unknown)."""
    return importlib.import_module(_MODULES[name])
