"""Atomic outputs: write to a temporary name in the same folder, then rename.

A reader (or a crash) sees either the old file or the complete new one, never a half
written one. ``durable=True`` also fsyncs the file and its folder, so the rename survives
a power loss (checkpoints, manifests); results and figures skip that cost.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path``'s folder durable (no-op where unsupported)."""
    try:
        fd = os.open(path.parent if path.parent != Path("") else Path("."), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path, data_only: bool = False) -> None:
    """Flush what was written to ``path`` to the disk: its data and metadata (fsync), or
    with ``data_only`` its data and what reading it needs, such as its size (fdatasync,
    where the system has it)."""
    sync = getattr(os, "fdatasync", os.fsync) if data_only else os.fsync
    fd = os.open(path, os.O_RDONLY)
    try:
        sync(fd)
    finally:
        os.close(fd)


def replace(tmp: str | Path, path: str | Path) -> None:
    """``os.replace(tmp, path)``; the blocks of the file it replaces are freed by a thread.

    Freeing a file's blocks can take milliseconds (ext4 mounted with ``discard`` trims
    them at once, after waiting for the journal): the old file is held open across the
    rename and a thread closes it, so the caller does not wait. Readers see the rename
    as before: atomic, the old file or the new one."""
    old = _hold(path)
    try:
        os.replace(tmp, path)
    finally:
        if old is not None:
            close_later(lambda: os.close(old))


def unlink(path: str | Path) -> None:
    """Remove ``path`` (if it exists); its blocks are freed by a thread (see :func:`replace`)."""
    old = _hold(path)
    try:
        Path(path).unlink(missing_ok=True)
    finally:
        if old is not None:
            close_later(lambda: os.close(old))


def close_later(close: Callable[[], None]) -> None:
    """Run ``close`` (of a file whose name is gone) in a daemon thread: the kernel frees
    the file's blocks there, while the caller goes on."""
    threading.Thread(target=close, name="simcore-free-blocks", daemon=True).start()


def _hold(path: str | Path) -> int | None:
    """A descriptor keeping ``path``'s regular file alive after its name goes, or None
    (no such file, not readable, or not a POSIX system, where open files cannot be
    renamed over)."""
    if os.name != "posix":
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def temporary_name(path: str | Path, tag: str = ".part") -> Path:
    """The temporary sibling of ``path``: ``name.part.suffix`` (so tools that look at the
    suffix, e.g. matplotlib or Pillow, still know the format)."""
    path = Path(path)
    return path.with_name(path.stem + tag + path.suffix)


@contextmanager
def atomic_output(path: str | Path, *, tmp: str | Path | None = None, durable: bool = False,
                  needed: int | None = None, translate: bool = True) -> Iterator[Path]:
    """Context manager yielding the temporary path to write; on success it is renamed onto
    ``path``. On failure the temporary file is removed; an OSError (or a netCDF library
    RuntimeError) becomes the :class:`~simcore.UserInputError` of
    :func:`simcore.io.write_errors.output_error` unless ``translate`` is False (``needed``:
    bytes the output needs, to tell a full disk from other library errors)."""
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else temporary_name(path)
    try:
        _refuse_a_bad_name(tmp)
        yield tmp
        if durable:
            fsync_file(tmp)
        replace(tmp, path)
        if durable:
            fsync_dir(path)
    except (OSError, RuntimeError) as exc:
        _remove_partial(tmp)
        if not translate:
            raise
        from simcore.io.write_errors import output_error

        raise output_error(path, exc, needed=needed) from None
    except BaseException:
        _remove_partial(tmp)
        raise


def _refuse_a_bad_name(tmp: Path) -> None:
    """Raise the OSError of a name too long or a symbolic-link loop before anything is
    written: netCDF-C reports a name too long as "Permission denied"."""
    from simcore._errors import path_error

    try:
        os.lstat(tmp)
    except OSError as exc:
        if path_error(exc) is not None:
            raise


def _remove_partial(tmp: Path) -> None:
    """Remove the temporary file of a failed output, keeping the failure's own error: the
    removal fails too when the name was the problem (too long, a symbolic-link loop)."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def write_text(path: str | Path, text: str, *, durable: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_output`."""
    with atomic_output(path, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
