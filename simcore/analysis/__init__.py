"""Analyses of simcore trajectories, one module per concept.

:mod:`.schooling` (Couzin), :mod:`.active` (ABP/AOUP), :mod:`.linear` (linear SDE), and the
dispatcher :func:`analyze_dataset` used by ``simcore analyze`` and ``ds.simcore.analyze()``.
"""

from __future__ import annotations

import xarray as xr

from simcore._errors import UserInputError


def analyze_dataset(ds: xr.Dataset, **kwargs) -> xr.Dataset:
    """Run the default diagnostics of the trajectory's model and return them as a Dataset."""
    model = ds.simcore.model
    if model == "couzin":
        from simcore.analysis.schooling import schooling_indices_from_dataset

        try:
            return schooling_indices_from_dataset(ds, **kwargs)
        except ValueError as err:  # e.g. the dewi convention on an open-space run
            raise UserInputError(f"Cannot analyze this trajectory: {err}") from None

    if model == "abp":
        from simcore.analysis.active import active_diagnostics

        return active_diagnostics(ds, **kwargs)
    if model == "linear":
        from simcore.analysis.linear import linear_diagnostics

        return linear_diagnostics(ds, **kwargs)
    if model == "harddisc":
        from simcore.analysis.boltzmann import boltzmann_entropy

        return boltzmann_entropy(ds, **kwargs)
    raise UserInputError(f"simcore analyze has no diagnostics for model {model!r} yet.")


def summarize(result: xr.Dataset) -> str:
    """A short text summary of a diagnostics Dataset (last-third means of time series)."""
    lines = []
    for name, var in result.data_vars.items():
        if "time" in var.dims and var.sizes["time"] > 0:
            t = var.sizes["time"]
            tail = var.isel(time=slice(t - max(1, t // 3), t))
            lines.append(f"  {name:30s} {float(tail.mean()):10.4f}  (mean over the last third)")
        elif var.ndim == 0:
            lines.append(f"  {name:30s} {float(var):10.4f}")
    return "\n".join(lines)
