"""How scoremodels reads each engine's files: one adapter per engine, named by the engine
record (``Engine.score_adapter``), so that the rest of scoremodels asks the record.

An adapter is ``f(record, handle, linear_variable) -> (Adapter, variables it reads,
linear_variable)``: ``record`` the file's run_parameters, ``handle`` the open netCDF4
file.
"""

from __future__ import annotations

import numpy as np

from scoremodels import network
from scoremodels.data import Adapter


def _active_params(record: dict):
    """The active-particle engine's validated parameters of a run_parameters record."""
    from simcore.models.active import Params

    return Params(**{k: v for k, v in record.items() if k in Params.model_fields})


def particle_adapter(record: dict) -> Adapter:
    """ABP (score of x and θ) or AOUP (x and g) particles; box and particle size from the
    engine's parameters."""
    p = _active_params(record)
    abp = p.propulsion == "abp"
    diag = [p.D_t, p.D_t] + ([p.D_r] if abp else [p.gamma, p.gamma])
    return Adapter(model="abp", state_dim=len(diag), x_dims=(0, 1),
                   p_dims=(2,) if abp else (2, 3), prop_kind="angle" if abp else "vector",
                   diffusion=np.diag(diag), local=True, n_atoms=p.n, box=p.box, params=record,
                   particle_diameter=2 * p.particle_radius, interacting=p.potential != "none",
                   kappa=p.kappa)


def linear_adapter(record: dict, n_atoms: int) -> Adapter:
    """``n_atoms`` copies of a linear SDE (one state vector per copy); a hypoelliptic AOUP
    spring network stored as a linear file gets the particle view of
    :mod:`scoremodels.network`."""
    D = np.asarray(record["D"], dtype=float)
    a = Adapter(model="linear", state_dim=len(D), x_dims=(), p_dims=(), prop_kind=None,
                diffusion=D, local=False, n_atoms=n_atoms, params=record, interacting=False)
    info = network.detect(record)
    return a if info is None else network.adapter(record, n_atoms, info)


def active_particles(record: dict, handle, linear_variable: str):
    """The adapter of an active-particle file (``Engine.score_adapter`` of abp)."""
    a = particle_adapter(record)
    return a, ["coordinates", "theta" if a.prop_kind == "angle" else "propulsion"], \
        linear_variable


def linear_sde(record: dict, handle, linear_variable: str):
    """The adapter of a linear-SDE file (``Engine.score_adapter`` of linear): the states
    are read from ``linear_variable`` (default ``x``; ``coordinates`` in older files)."""
    var = linear_variable if linear_variable in handle.variables else "coordinates"
    return linear_adapter(record, handle.variables[var].shape[1]), [var], var


def force_divergence(frame_raw: dict, adapter: Adapter, f: int) -> np.ndarray:
    """μ ∇_i·F_i (pair forces and trap) of frame ``f`` of an active-particle file, from the
    engine's state of that frame (``state_from_frame``) and its forces."""
    from simcore.models import active

    params = _active_params(adapter.params)
    pos = np.zeros((params.n, 3))
    pos[:, :2] = frame_raw["pos"][f]
    variables = {"coordinates": pos}
    if adapter.prop_kind == "angle":
        variables["theta"] = frame_raw["prop"][f, :, 0].astype(np.float64)
    else:
        g = np.zeros((params.n, 3))
        g[:, :2] = frame_raw["prop"][f]
        variables["propulsion"] = g
    state = active.ENGINE.state_from_frame(variables, params)
    _, div = active.forces(state, params, divergence=True)  # pair + trap (−2κ)
    return params.mu * div
