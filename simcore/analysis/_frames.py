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


#: fewer independent samples than this in a series (its length over the integrated
#: autocorrelation time) make its error bar itself uncertain by more than ~30 %
MIN_INDEPENDENT_SAMPLES = 10


def integrated_time(values, window: float = 5.0) -> float:
    """The integrated autocorrelation time τ = 1 + 2 Σ ρ(k) of a series, in samples, with
    Sokal's automatic window (the first lag M ≥ ``window`` · τ(M)); the variance of the
    series' mean is var · τ / N. 1 for an uncorrelated series, and for a constant one (its
    mean is exact: no fluctuation to correlate)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    x = x - x.mean()
    if n < 2 or not np.any(x):
        return 1.0
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, size)
    acf = np.fft.irfft(f * np.conj(f), size)[:n]
    acf /= acf[0]
    taus = 2.0 * np.cumsum(acf) - 1.0
    ok = np.arange(n) >= window * taus
    return float(max(1.0, taus[np.argmax(ok)] if ok.any() else taus[-1]))


def block_mean(values, n_blocks: int = 10) -> tuple[float, float]:
    """Mean of a time series and its standard error: the larger of the error from
    ``n_blocks`` contiguous block means (at least 2 blocks) and σ·√(τ/N) from the series'
    integrated autocorrelation time τ (:func:`integrated_time`), so that blocks shorter
    than the correlation time do not shrink it. Warns when the series holds fewer than
    :data:`MIN_INDEPENDENT_SAMPLES` independent samples (N/τ): the error bar is then
    itself unreliable (a run too short for its correlation time)."""
    import warnings

    values = np.asarray(values, dtype=float)
    n = len(values)
    n_blocks = max(2, min(n_blocks, n))
    blocks = np.array([b.mean() for b in np.array_split(values, n_blocks) if len(b)])
    err = float(blocks.std(ddof=1) / math.sqrt(len(blocks))) if len(blocks) > 1 else math.nan
    tau = integrated_time(values)
    if math.isfinite(tau) and n > 1:
        err = max(err, float(values.std(ddof=1) * math.sqrt(tau / n)))
    if not n / tau >= MIN_INDEPENDENT_SAMPLES:
        warnings.warn(
            f"The error bar of a mean over {n} frames is unreliable: they hold about "
            f"{n / tau:.1f} independent samples (autocorrelation time {tau:.3g} frames), "
            f"fewer than {MIN_INDEPENDENT_SAMPLES}. Run longer or write frames less often.",
            stacklevel=3)
    return float(values.mean()), err


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
