"""A tiny simcore engine that lives only in the tests: overdamped Brownian walkers.

It is registered exactly as a third-party package would register one: the folder
``tests/plugins`` holds this module and a ``simcore_walkers-0.1.dist-info`` whose
``entry_points.txt`` declares ``walkers = simcore_walkers:ENGINE`` in the
``simcore.engines`` group, so putting the folder on ``sys.path`` (or ``PYTHONPATH``)
installs it. No file of simcore names it. It follows docs/architecture.md, "How to add an
engine", step by step.

Physics: N independent walkers in a periodic square of side ``box``,
dx = √(2D) dW (Euler steps of ``dt``, exact for this process). The noise of step s is a
pure function of (run key, s), so a run cut anywhere resumes to the same bits and the
thread count cannot matter. Its analysis compares the mean squared displacement with the
closed form 4 D t (2D).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from simcore.engine import Engine, Option
from simcore.models import box_corner


class Params(BaseModel):
    """Walker parameters (model units)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    n: int = Field(100, ge=1, le=10_000_000, description="number of walkers")
    box: float = Field(10.0, gt=0, allow_inf_nan=False, description="periodic box side")
    D: float = Field(1.0, ge=0, allow_inf_nan=False, description="diffusion coefficient")
    dt: float = Field(0.01, gt=0, allow_inf_nan=False, description="time step")


PRESETS = {"dilute": dict(n=100), "fast": dict(n=50, D=4.0, steps=500)}
PRESET_DOCS = {"dilute": "100 walkers, D = 1", "fast": "50 walkers, D = 4"}


def init_state(params: Params, seed: int) -> dict[str, np.ndarray]:
    """Uniform positions in the box; zero displacement."""
    g = np.random.default_rng(seed)
    return {"positions": g.random((params.n, 2)) * params.box,
            "displacement": np.zeros((params.n, 2))}


def advance(state, params: Params, key, step: int, n_steps: int) -> None:
    """``n_steps`` Euler steps from global step ``step``, in place."""
    scale = np.sqrt(2.0 * params.D * params.dt)
    for s in range(step, step + n_steps):
        dx = scale * np.random.default_rng([int(key), s]).standard_normal((params.n, 2))
        state["displacement"] += dx
        state["positions"][:] = (state["positions"] + dx) % params.box


def _pad(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a, np.zeros((len(a), 1))], axis=1)


def frame(state, params: Params) -> dict[str, np.ndarray]:
    """Positions (z = 0), the periodic cell and the unwrapped displacement."""
    return {"coordinates": _pad(state["positions"]),
            "cell_lengths": np.array([params.box, params.box, 0.0]),
            "displacement": _pad(state["displacement"])}


def state_from_frame(variables: dict[str, np.ndarray], params: Params) -> dict[str, np.ndarray]:
    """The inverse of :func:`frame`."""
    return {"positions": np.asarray(variables["coordinates"], float)[:, :2] % params.box,
            "displacement": np.asarray(variables["displacement"], float)[:, :2].copy()}


def extra_variables(params: Params) -> dict:
    return {"displacement": (("atom", "spatial"), "model length unit",
                             "displacement since t = 0 (unwrapped)")}


def geometry(params: Params) -> dict:
    return {"simcore_boundary": "periodic periodic none",
            "simcore_box_lo": box_corner(0.0, 0.0, 0.0),
            "simcore_box_hi": box_corner(params.box, params.box, 0.0)}


def msd(ds: xr.Dataset, estimator: str = "mean") -> xr.Dataset:
    """Mean squared displacement per frame against the closed form 4 D t, with the
    standard error over walkers; ``estimator`` "mean" or "median" (of |Δx|², then scaled
    by 1/ln 2 for the exponential distribution of |Δx|² in 2D)."""
    p = ds.simcore.params
    d2 = (ds["displacement"].astype("float64") ** 2).sum("spatial")
    if estimator == "mean":
        value = d2.mean("atom")
    else:
        value = d2.median("atom") / np.log(2.0)
    err = d2.std("atom") / np.sqrt(ds.sizes["atom"])
    return xr.Dataset({"msd": value, "msd_err": err, "msd_exact": 4.0 * p.D * ds["time"]})


def figure(ds: xr.Dataset, **options):
    import matplotlib.pyplot as plt

    res = msd(ds, **options)
    fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    ax.errorbar(res["time"], res["msd"], yerr=res["msd_err"], fmt="o", ms=3)
    ax.plot(res["time"], res["msd_exact"], "k--")
    ax.set_xlabel("time")
    ax.set_ylabel("MSD")
    return fig


def animate(ds: xr.Dataset, out, progress: bool = True) -> Path:
    from simcore.plotting._common import animation_frames, pyplot, scatter_2d, write_gif

    p = ds.simcore.params
    picks = animation_frames(ds.sizes["time"])
    fig, ax = pyplot().subplots(figsize=(4, 4))

    def draw(k):
        ax.cla()
        pos = ds["coordinates"].isel(time=int(picks[k])).values[:, :2]
        scatter_2d(ax, pos, np.zeros(len(pos)), (p.box, p.box), radius=0.1)

    return write_gif(fig, draw, len(picks), out, progress=progress)


ENGINE = Engine(
    name="walkers", ndim=2, Params=Params, presets=PRESETS, preset_docs=PRESET_DOCS,
    description="overdamped Brownian walkers (a test engine)",
    default_preset="dilute", default_steps=200, default_write_every=20,
    init_state=init_state, advance=advance, frame=frame, state_from_frame=state_from_frame,
    extra_variables=extra_variables, time_per_step=lambda params: params.dt,
    geometry=geometry, has_velocities=False, threaded=False,
    analysis="simcore_walkers:msd", figure="simcore_walkers:figure",
    animation="simcore_walkers:animate",
    analysis_options=(Option("estimator", "MSD estimator", choices=("mean", "median"),
                             default="mean"),),
    quick_run={"n": 200, "steps": 100, "write_every": 10},
)
