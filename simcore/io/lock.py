"""One writer per output: an exclusive lock file beside each run's output and in each
sweep folder.

The lock is a small file (``OUT.nc.lock``, ``SWEEP_DIR/.simcore.lock``) holding the
owner's PID, host, command line and start time, and held with ``flock``. The kernel
releases an ``flock`` when its owner dies, however it dies (SIGKILL included), so a
crashed owner's lock is recognised as stale without guessing from PIDs (which are
reused and mean nothing on another host of a shared file system); the next writer
takes it over and says so. A live owner's lock refuses a second writer with exit 2 and
the owner's PID and host.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Callable

from simcore._errors import UserInputError
from simcore.io.atomic import close_later

_RETRIES = 5


class OutputLock:
    """Context manager: hold ``path`` exclusively while writing ``what``.

    ``log`` receives the one-line message when a stale lock is taken over.
    Raises :class:`UserInputError` if another live process holds the lock, or if the
    lock file cannot be created (read-only or missing folder, no permission).
    """

    def __init__(self, path: str | Path, what: str, log: Callable[[str], None] = print):
        self.path = Path(path)
        self.what = what  # a sentence's subject, e.g. "The output run.nc"
        self.log = log
        self._fd = -1

    @property
    def _object(self) -> str:
        """``what`` inside a sentence: "the output run.nc"."""
        return self.what[:1].lower() + self.what[1:]

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise :class:`UserInputError` naming its live owner."""
        for _ in range(_RETRIES):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                from simcore._errors import path_error

                if (error := path_error(exc)) is not None:
                    raise error from None
                raise UserInputError(
                    f"Cannot create the lock file {self.path} for {self._object} "
                    f"({exc.strerror or exc}): the folder {self.path.parent} must exist and be "
                    "writable by you on a writable file system.") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_owner(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    raise UserInputError(
                        f"{self.what} is being written by another process ({_describe(owner)}; "
                        f"lock {self.path}). simcore allows one writer per output: wait for it "
                        "to finish, stop it, or write elsewhere.") from None
                # a file system without flock: go on unlocked rather than refuse every run
                self.log(f"warning: {self.path.parent} does not support file locks "
                         f"({exc.strerror}); two runs writing {self._object} would not be stopped.")
                self._fd = -1
                return
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous owner removed the file between our open and flock
                os.close(fd)
                continue
            previous = _read_owner(fd)
            if previous:
                self.log(f"Taking over the stale lock {self.path} of {_describe(previous)}, "
                         "which is no longer running (it was killed or crashed).")
            try:
                _write_owner(fd)
            except OSError as exc:
                os.close(fd)
                self.path.unlink(missing_ok=True)
                from simcore.io.write_errors import disk_full_error, is_space_error

                if is_space_error(exc):
                    raise disk_full_error(self.path, exc, kept="Nothing was written yet: free "
                                          "some space and run the command again.") from None
                raise UserInputError(f"Cannot write the lock file {self.path}: "
                                     f"{exc.strerror or exc}.") from None
            self._fd = fd
            return
        raise UserInputError(f"Could not take the lock {self.path} for {self._object}: other "
                             "processes keep replacing it; try again.")

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent). The descriptor is closed
        by a thread (a close that frees the file can wait for the file system's journal:
        ~4 ms after a run's fsyncs on ext4); the name is gone already, so a new writer
        creates and locks a new file meanwhile."""
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        fd, self._fd = self._fd, -1
        close_later(lambda: os.close(fd))


def _read_owner(fd: int) -> dict:
    try:
        data = os.pread(fd, 65536, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}


def _write_owner(fd: int) -> None:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "argv": sys.argv,
        "utc_start": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _describe(owner: dict) -> str:
    if not owner:
        return "a process that is just starting"
    return (f"PID {owner.get('pid')} on host {owner.get('host')}, started "
            f"{owner.get('utc_start')}")
