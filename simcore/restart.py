"""Starting a run from a stored frame: the run setting ``init_from = "FILE[:FRAME]"``.

A new run (possibly with new parameters and a new seed) starts from frame FRAME (an
index; negative counts from the end; default the last) of any simcore file of the same
model, as LAMMPS' ``read_restart`` or HOOMD's ``create_state_from_gsd`` do:

* when FRAME is the file's last frame, the file stores its final state (every finished
  simcore file does) and the model parameters are the file's, that state is used as it is
  (float64, exact): only the seed, and so the noise, is new;
* otherwise the model rebuilds a state from the frame's stored variables
  (``state_from_frame``; float32 files give float32-rounded positions) and checks it
  against the new parameters (inside the box, no overlapping hard discs ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simcore._errors import UserInputError


def parse_init_from(spec: str) -> tuple[Path, int]:
    """``"FILE[:FRAME]"`` -> (path, frame index; -1 = last)."""
    path, _, index = spec.rpartition(":")
    if path and index.lstrip("-").isdigit():
        return Path(path), int(index)
    return Path(spec), -1


def initial_state(model_name: str, model, params, seed: int, init_from: str | None) -> dict:
    """The run's initial state: ``model.init_state`` or the state of a stored frame."""
    if init_from is None:
        return model.init_state(params, seed)
    from simcore.config import split_run_parameters
    from simcore.io.trajectory import read_attrs, read_state

    path, index = parse_init_from(init_from)
    attrs = read_attrs(path)
    source_model, source_params, _, _ = split_run_parameters(str(attrs["run_parameters"]))
    if source_model != model_name:
        raise UserInputError(f"init_from: {path} holds a '{source_model}' run, not "
                             f"'{model_name}'; start from a file of the same model.")
    if getattr(source_params, "n", None) != params.n:
        raise UserInputError(f"init_from: {path} has n = {source_params.n} particles but this "
                             f"run has n = {params.n}; they must agree.")
    variables, n_frames = _read_frame(path, index)
    k = index % n_frames
    if k == n_frames - 1 and source_params == params:
        state = read_state(path)
        if state is not None:
            return state
    if model.state_from_frame is None:
        raise UserInputError(f"The '{model_name}' engine cannot start from a stored frame.")
    return model.state_from_frame(variables, params)


def _read_frame(path: Path, index: int) -> tuple[dict[str, np.ndarray], int]:
    import netCDF4

    from simcore.io.framelog import is_frame_log

    if is_frame_log(path):
        raise UserInputError(f"init_from: {path} is a partial file; start from a finished run "
                             "(or finish it with --resume first).")
    from simcore.io.nclock import NETCDF_LOCK

    with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        n_frames = ds.dimensions["frame"].size
        if not -n_frames <= index < n_frames:
            raise UserInputError(f"init_from: {path} has {n_frames} frames (0..{n_frames - 1}); "
                                 f"frame {index} does not exist.")
        variables = {name: np.asarray(v[index], dtype=np.float64 if v.dtype.kind == "f"
                                      else v.dtype)
                     for name, v in ds.variables.items()
                     if v.dimensions[:1] == ("frame",)}
    return variables, n_frames
