"""Frame bookkeeping shared by the analyses: the frame dimension, burn-in, block errors and
the engine state of a stored frame."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr


def frame_dim(ds: xr.Dataset, variable: str = "coordinates") -> str:
    """The frame dimension of ``variable``: ``time`` in files opened with
    :func:`simcore.open_trajectory` (time as the index), ``frame`` in raw ones."""
    return "time" if "time" in ds[variable].dims else "frame"


def first_after_burn_in(n_frames: int, burn_in: float) -> int:
    """Index of the first frame kept after dropping the fraction ``burn_in`` (at least one
    frame is always kept)."""
    return max(0, min(int(burn_in * n_frames), n_frames - 1))


def block_mean(values, n_blocks: int = 10) -> tuple[float, float]:
    """Mean of a time series and its standard error from ``n_blocks`` contiguous block
    means (at least 2 blocks; valid when a block is longer than the correlation time)."""
    values = np.asarray(values, dtype=float)
    n_blocks = max(2, min(n_blocks, len(values)))
    blocks = np.array([b.mean() for b in np.array_split(values, n_blocks)])
    return float(values.mean()), float(blocks.std(ddof=1) / math.sqrt(n_blocks))


def frame_variables(ds: xr.Dataset, k: int, names=None) -> dict[str, np.ndarray]:
    """Frame ``k``'s per-frame variables (only ``names`` when given) as float64 arrays
    (integers kept), the input of an engine's ``state_from_frame``."""
    dim = frame_dim(ds)
    out = {}
    for name, var in ds.data_vars.items():
        if var.dims[:1] == (dim,) and (names is None or name in names):
            values = var.isel({dim: k}).values
            out[name] = values.astype(np.float64) if values.dtype.kind == "f" else values
    return out


def frame_state(ds: xr.Dataset, k: int, names=None) -> dict[str, np.ndarray]:
    """The engine state of stored frame ``k`` (its record's ``state_from_frame``), e.g. to
    recompute forces; ``names``: the variables the state needs (default: all per-frame
    variables, which a loop over frames would read for nothing)."""
    from simcore.models import get_engine

    engine = get_engine(ds.simcore.model)
    return engine.state_from_frame(frame_variables(ds, k, names), ds.simcore.params)
