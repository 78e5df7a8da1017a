"""The ``ds.simcore`` xarray accessor for trajectories written by simcore."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from pydantic import BaseModel

    from simcore.config import RunSettings


@xr.register_dataset_accessor("simcore")
class SimcoreAccessor:
    """Decoded metadata of a simcore trajectory: ``ds.simcore.model``, ``.params`` ...."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds
        self._decoded = None

    def _decode(self):
        if self._decoded is None:
            from simcore.config import split_run_parameters

            from simcore._errors import UserInputError

            source = self._ds.encoding.get("source")
            text = self._ds.attrs.get("run_parameters")
            if text is None:
                raise UserInputError(
                    f"{'The file ' + str(source) if source else 'This Dataset'} is not a "
                    "simcore trajectory (it has no run_parameters attribute); open a file "
                    "written by `simcore run` with simcore.open_trajectory.")
            self._decoded = split_run_parameters(text, source)
        return self._decoded

    @property
    def model(self) -> str:
        """Model name (``couzin``, ``abp``, ``harddisc`` ...)."""
        return self._decode()[0]

    @property
    def params(self) -> "BaseModel":
        """The validated model parameters (a frozen pydantic object)."""
        return self._decode()[1]

    @property
    def run_settings(self) -> "RunSettings":
        """Steps, seed, write_every, format ... of the run."""
        return self._decode()[2]

    @property
    def preset(self) -> str | None:
        return self._decode()[3]

    @property
    def ndim(self) -> int:
        """Physical dimension of the model (2D files pad z = 0)."""
        return int(self._ds.attrs.get("simcore_ndim", 3))

    @property
    def provenance(self) -> dict:
        """Package versions, git commit, command line, host and start time of the run."""
        return json.loads(self._ds.attrs.get("provenance", "{}"))

    @property
    def box(self) -> np.ndarray:
        """Periodic box side per axis (0 = not periodic) of the first frame."""
        if "cell_lengths" not in self._ds.variables:  # amber file without a periodic axis
            return np.zeros(3)
        lengths = self._ds["cell_lengths"]
        return np.asarray(lengths.isel({lengths.dims[0]: 0}).values, dtype=float)

    def analyze(self, **kwargs) -> xr.Dataset:
        """The model's diagnostics (same as ``simcore analyze``)."""
        from simcore.analysis import analyze_dataset

        return analyze_dataset(self._ds, **kwargs)
