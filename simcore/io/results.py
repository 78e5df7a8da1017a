"""Writing analysis results (NetCDF, figures) atomically, with honest errors.

Every output goes to ``OUT.part`` first and is renamed when complete; a failed write
removes the ``.part`` and raises a :class:`UserInputError` that says what happened:
a full disk, quota or file-size limit only for ENOSPC/EDQUOT/EFBIG (or a NetCDF library
error on a file system that is indeed out of space), a permission problem, a read-only
file system, or a place where files cannot be created (``/proc``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

import xarray as xr

from simcore._errors import UserInputError

SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path.parent if str(path.parent) else ".").free
    except OSError:
        return None


def output_error(path: str | Path, exc: BaseException, needed: int | None = None
                 ) -> UserInputError:
    """The :class:`UserInputError` for a failed write of the output ``path``.

    ``exc`` is the OSError (classified by errno) or a NetCDF library error (a RuntimeError
    such as "NetCDF: HDF error", called a full disk only when the file system has less free
    space than ``needed`` bytes plus 1 MiB).
    """
    path = Path(path)
    free = _free(path)
    free_txt = "free space unknown" if free is None else f"{free / 2**20:.1f} MiB free"
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if code in SPACE_ERRNOS or (code is None and free is not None
                                and free < (needed or 0) + 2**20):
        return UserInputError(
            f"Writing {path} failed ({reason}; {free_txt} there): the disk is full or a quota "
            "or file-size limit was reached. Nothing was written (the partial output was "
            "removed); free some space or choose another folder with -o, then rerun.")
    if code in (errno.EACCES, errno.EPERM):
        advice = "you may not create files there; choose a folder you can write to with -o"
    elif code == errno.EROFS:
        advice = "that file system is read-only; choose a writable folder with -o"
    elif code == errno.ENOENT and path.parent.exists():
        advice = (f"{path.parent} does not accept new files (a virtual file system such as "
                  "/proc or /sys); choose an ordinary folder with -o")
    elif code == errno.ENOENT:
        advice = f"the folder {path.parent} does not exist; create it or choose another -o"
    else:
        advice = "choose another output with -o"
    return UserInputError(f"Cannot write {path} ({reason}): {advice}. Nothing was written.")


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


@contextlib.contextmanager
def atomic_output(path: str | Path, tmp: str | Path | None = None, needed: int | None = None):
    """Write an output through a temporary file: yields ``tmp`` (default ``OUT.part``
    beside ``path``), renamed onto ``path`` when the block completes. Any failure (also
    Ctrl-C) removes the temporary; an OSError or NetCDF/HDF RuntimeError becomes
    :func:`output_error` (``needed``: the expected size in bytes, for its full-disk test),
    so ``path`` either keeps its old content or holds the complete new output."""
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else path.with_name(path.name + ".part")
    try:
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise output_error(path, exc, needed=needed) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    with atomic_output(path, needed=int(ds.nbytes)) as tmp:
        ds.to_netcdf(tmp)
    return path


def save_figure(fig, out: str | Path, tmp: str | Path | None = None, **kwargs) -> Path:
    """``fig.savefig`` to ``tmp`` (default ``OUT.part.SUFFIX``), then rename to ``out``;
    a failed write removes the partial file and raises :func:`output_error`."""
    out = Path(out)
    tmp = Path(tmp) if tmp is not None else out.with_name(out.stem + ".part" + out.suffix)
    try:
        fig.savefig(tmp, **kwargs)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise output_error(out, exc) from None
    return out

