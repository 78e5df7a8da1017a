"""Analyses of simcore trajectories, one module per concept.

:mod:`.schooling` (Couzin), :mod:`.active` (ABP/AOUP), :mod:`.linear` (linear SDE),
:mod:`.boltzmann` (hard discs), and :func:`analyze_dataset`, used by ``simcore analyze`` and
``ds.simcore.analyze()``, which runs the analysis that the file's engine record names.
"""

from __future__ import annotations

import xarray as xr

from simcore._errors import UserInputError


def _analysis_name(model: str) -> str:
    """The default analysis of ``model``'s files as ``module.function`` (for messages)."""
    from simcore.models import get_engine

    try:
        ref = get_engine(model).analysis
    except KeyError:
        ref = None
    return ref.replace(":", ".") if ref else "simcore analyze"


def require_model(ds, expected: str, what: str) -> str:
    """Check that ``ds`` is an open simcore trajectory of model ``expected``; return the
    model name. Anything else (a path, another model's file, a Dataset without simcore
    metadata) is a :class:`UserInputError` that names the model the file holds, the one
    ``what`` (the analysis) expects, and the analysis that fits the file."""
    if not isinstance(ds, xr.Dataset):
        raise UserInputError(
            f"{what} takes an xarray Dataset opened with simcore.open_trajectory(path) (got "
            f"{type(ds).__name__} {str(ds)[:80]!r}).")
    model = ds.simcore.model
    if model != expected:
        source = ds.encoding.get("source")
        where = f"{source} holds" if source else "this Dataset holds"
        raise UserInputError(
            f"{what} analyses '{expected}' trajectories, but {where} a run of model "
            f"'{model}'. Use "
            f"{_analysis_name(model)} for it, or ds.simcore.analyze(), which "
            "picks the analysis of the file's model.")
    return model


def analyze_dataset(ds: xr.Dataset, progress: bool = False, **kwargs) -> xr.Dataset:
    """Run the default diagnostics of the trajectory's model and return them as a Dataset.

    ``kwargs`` go to the engine's analysis (its record's ``analysis``); an option that it does
    not take is a :class:`UserInputError`. Results on the trajectory's ``time`` carry its
    ``frame`` index as a coordinate too (the coordinate names of every simcore file).
    ``progress``: a progress bar over the frames, where the analysis offers one.
    """
    out = _analyze_dataset(ds, progress, **kwargs)
    if ("time" in out.dims and "frame" not in out.coords and "frame" in ds.coords
            and ds["frame"].dims == ("time",)):
        try:
            frames = ds["frame"].sel(time=out["time"].values).values
        except (KeyError, ValueError):  # times not in the trajectory: leave them
            return out
        out = out.assign_coords(frame=("time", frames))
    return out


def _analyze_dataset(ds: xr.Dataset, progress: bool, **kwargs) -> xr.Dataset:
    import inspect

    from simcore.models import get_engine

    if not isinstance(ds, xr.Dataset):
        raise UserInputError(
            "analyze_dataset takes an xarray Dataset opened with simcore.open_trajectory(path) "
            f"(got {type(ds).__name__}).")
    model = ds.simcore.model
    analysis = get_engine(model).load("analysis")
    if analysis is None:
        raise UserInputError(f"simcore analyze has no diagnostics for model {model!r} yet.")
    accepted = [p for p in inspect.signature(analysis).parameters if p not in ("ds", "progress")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserInputError(
            f"The analysis of '{model}' trajectories ({_analysis_name(model)}) has no option "
            f"{', '.join(unknown)}; it takes {', '.join(accepted) or 'no options'}.")
    if "progress" in inspect.signature(analysis).parameters:
        kwargs = dict(kwargs, progress=progress)
    # input problems (e.g. the dewi convention on an open-space run) raise
    # InvalidValueError, a UserInputError; any other exception is a defect and says so
    return analysis(ds, **kwargs)


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
