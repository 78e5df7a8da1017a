"""Writing analysis results (NetCDF) atomically."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import xarray as xr

from simcore._errors import UserInputError
from simcore.io.trajectory import disk_full_error


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        ds.to_netcdf(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise disk_full_error(path, exc) from None
        raise UserInputError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    return path
