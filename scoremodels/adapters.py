"""How scoremodels reads each engine's files: one adapter per engine, named by the engine
record (``Engine.score_adapter``), so that the rest of scoremodels asks the record.

An adapter is ``f(record, handle, linear_variable) -> (Adapter, variables it reads,
linear_variable)``: ``record`` the file's run_parameters, ``handle`` the open netCDF4
file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from simcore._errors import UserInputError
from scoremodels import network

#: sample layouts (see :class:`Adapter`)
PARTICLES = "particles"
STATE_VECTORS = "state_vectors"
_LEGACY_LAYOUTS = {"abp": PARTICLES, "linear": STATE_VECTORS, "aoup_network": network.LAYOUT}


@dataclass
class Adapter:
    """What the score models need to know about one engine's files.

    ``layout``: how a frame becomes samples -- :data:`PARTICLES` (one sample per particle
    of a 2D box, with neighbourhoods when ``local``), :data:`STATE_VECTORS` (one sample per
    independent copy of a whole state vector) or ``scoremodels.network.LAYOUT`` (a spring
    network stored as state vectors, seen per particle); ``state_dim`` S: own-state
    components per sample; ``x_dims``/``p_dims``: which of them are position / propulsion;
    ``prop_kind``: "angle", "vector" or None;
    ``diffusion``: the S×S diffusion matrix D (dX = b dt + √(2D) dW);
    ``local``: samples have neighbourhoods (interacting particles in a periodic box).
    """

    layout: str
    state_dim: int
    x_dims: tuple
    p_dims: tuple
    prop_kind: str | None
    diffusion: np.ndarray
    local: bool
    n_atoms: int
    box: float = 0.0
    params: dict = field(default_factory=dict)
    particle_diameter: float = 1.0
    interacting: bool = True
    kappa: float = 0.0

    @property
    def prop_dim(self) -> int:
        return len(self.p_dims)

    def sector_dims(self, sector: str) -> tuple:
        """Score dimensions of a sector: "full" (all) or "propulsion" (the p block)."""
        if sector == "full":
            return tuple(range(self.state_dim))
        if sector == "propulsion":
            if not self.p_dims:
                raise UserInputError("This system has no propulsion sector.")
            return tuple(self.p_dims)
        raise UserInputError(f"Unknown sector {sector!r}: use 'full' or 'propulsion'.")

    def default_sector(self) -> str:
        """The anchor's convention: all noisy dofs (elliptic), or only the propulsion
        sector when the positions are noiseless (hypoelliptic, D_t = 0)."""
        diag = np.diag(self.diffusion)
        if self.x_dims and np.all(diag[list(self.x_dims)] == 0):
            return "propulsion"
        return "full"

    def drift_divergence(self, dims) -> float | None:
        """∇·b over the score dims when it is a constant (linear SDE, non-interacting
        particles), else None."""
        if self.layout == STATE_VECTORS:
            return float(-np.trace(np.asarray(self.params["B"], float)))
        p = self.params
        out = 0.0
        for d in dims:
            if d in self.x_dims:
                if self.interacting:
                    return None
                out -= p.get("kappa", 0.0) * p.get("mu", 1.0)
            elif self.prop_kind == "vector":
                out -= p["gamma"]
        return out

    def to_json(self) -> str:
        d = dict(self.__dict__)
        d["diffusion"] = self.diffusion.tolist()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "Adapter":
        d = json.loads(text)
        if "model" in d:  # run directories written before the layouts were named
            d["layout"] = _LEGACY_LAYOUTS.get(d.pop("model"), "?")
        d["diffusion"] = np.asarray(d["diffusion"], dtype=float)
        d["x_dims"], d["p_dims"] = tuple(d["x_dims"]), tuple(d["p_dims"])
        return cls(**d)




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
    return Adapter(layout=PARTICLES, state_dim=len(diag), x_dims=(0, 1),
                   p_dims=(2,) if abp else (2, 3), prop_kind="angle" if abp else "vector",
                   diffusion=np.diag(diag), local=True, n_atoms=p.n, box=p.box, params=record,
                   particle_diameter=2 * p.particle_radius, interacting=p.potential != "none",
                   kappa=p.kappa)


def linear_adapter(record: dict, n_atoms: int) -> Adapter:
    """``n_atoms`` copies of a linear SDE (one state vector per copy); a hypoelliptic AOUP
    spring network stored as a linear file gets the particle view of
    :mod:`scoremodels.network`."""
    D = np.asarray(record["D"], dtype=float)
    a = Adapter(layout=STATE_VECTORS, state_dim=len(D), x_dims=(), p_dims=(), prop_kind=None,
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
