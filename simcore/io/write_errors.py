"""How a failed write is told: a full disk (ENOSPC, EDQUOT, EFBIG, or a NetCDF library error
on a file system that is indeed out of space) only when it is one, else the real cause
with what to do. One home for trajectories, checkpoints, results and figures.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from simcore._errors import UserInputError, path_error

SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def free_bytes(path: Path) -> int | None:
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
    if (error := path_error(exc)) is not None:  # the name itself is wrong, not the disk
        return error
    path = Path(path)
    from simcore._memory import format_bytes

    free = free_bytes(path)
    free_txt = "free space unknown" if free is None else f"{format_bytes(free)} free"
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


def disk_full_error(path, exc: Exception, kept: str | None = None) -> UserInputError:
    """A clear error for a write that failed for lack of space (ENOSPC, EDQUOT, EFBIG).

    ``kept`` says what survived and how to continue (default: the run's checkpoint)."""
    from simcore._memory import format_bytes

    free = free_bytes(Path(path))
    free = "free space unknown" if free is None else f"{format_bytes(free)} free"
    reason = getattr(exc, "strerror", None) or str(exc)
    return UserInputError(
        f"Writing {path} failed ({reason}; {free}): the disk is full or a file-size limit was "
        "reached. " + (kept or "Frames up to the last checkpoint are kept: free some space and "
                       "rerun the same command with --resume to continue.")
    )




def is_space_error(exc: BaseException, path: str | Path | None = None) -> bool:
    """True for a write that failed for lack of space: ENOSPC, EDQUOT or EFBIG.

    netCDF-C raises RuntimeError, and HDF5 reports a full disk only as "NetCDF: HDF
    error"; that text counts as a full disk only when ``path``'s file system really has
    (almost) no space left or ``path`` has reached the file-size limit (``ulimit -f``).
    """
    if isinstance(exc, OSError):
        return exc.errno in SPACE_ERRNOS
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    if any(s in text for s in ("no space", "file too large", "quota")):
        return True
    if "hdf error" not in text or path is None:
        return False
    import shutil

    path = Path(path)
    try:
        if shutil.disk_usage(path.parent).free < 64 * 2**20:
            return True
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        return limit != resource.RLIM_INFINITY and path.stat().st_size >= limit - 2**20
    except (OSError, ImportError):
        return False
