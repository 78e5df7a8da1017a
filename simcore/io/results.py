"""Writing analysis results (NetCDF, figures) atomically, with honest errors.

Every output goes to ``OUT.part`` first and is renamed when complete; a failed write
removes the ``.part`` and raises the :class:`UserInputError` of
:func:`simcore.io.write_errors.output_error`, which says what happened:
a full disk, quota or file-size limit only for ENOSPC/EDQUOT/EFBIG (or a NetCDF library
error on a file system that is indeed out of space), a permission problem, a read-only
file system, or a place where files cannot be created (``/proc``).
"""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from simcore.io.write_errors import output_error


def probe_output(path: str | Path) -> None:
    """Create and remove ``PATH.part`` to learn at once, before a long analysis, whether
    the output can be written there (permissions, read-only or virtual file system)."""
    path = Path(path)
    probe = path.with_name(path.name + ".part")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        raise output_error(path, exc) from None
    os.close(fd)
    probe.unlink(missing_ok=True)


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` via a temporary file and an atomic rename."""
    from simcore.io.atomic import atomic_output

    with atomic_output(path, tmp=Path(path).with_name(Path(path).name + ".part"),
                       needed=int(ds.nbytes)) as tmp:
        ds.to_netcdf(tmp)
    return Path(path)


def save_figure(fig, out: str | Path, tmp: str | Path | None = None, **kwargs) -> Path:
    """``fig.savefig`` to ``tmp`` (default ``OUT.part.SUFFIX``), then rename to ``out``;
    a failed write removes the partial file and raises :func:`output_error`."""
    from simcore.io.atomic import atomic_output

    with atomic_output(out, tmp=tmp) as path:
        fig.savefig(path, **kwargs)
    return Path(out)
