"""Signals as requests to stop cleanly: SIGINT (Ctrl-C) and SIGTERM (what SLURM and PBS
send at the wall-time limit, and ``kill``'s default) make a run checkpoint at the next
frame (or, within a long frame interval, at the last one: see ``driver._PIECE_SECONDS``;
while a run's start or first interval compiles the kernels, at once) and stop with
exit code 130 or 143 and a one-line hint to ``--resume``."""

from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped on a signal after writing a checkpoint; ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


class AbandonedForStop(KeyboardInterrupt):
    """A stop signal arrived while the work under way could be dropped at once (the caller's
    ``StopRequest.abandon`` said so): raised from the signal handler, in that work. A
    KeyboardInterrupt, so that code catching ``Exception`` (Numba's compiler among it)
    lets it through."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = int(signum)


class StopRequest:
    """Which stop signal arrived (``signum``), if any, while :func:`stop_requests` was active.

    ``abandon``: None, or a callable that the handler asks on each stop signal; where it
    returns True the handler raises :class:`AbandonedForStop` instead of only recording the
    signal (a kernel's first compilation, a minute or more, that nothing is lost by
    dropping)."""

    def __init__(self):
        self.signum: int | None = None
        self.abandon = None


@contextlib.contextmanager
def stop_requests():
    """Record SIGINT/SIGTERM instead of dying, so the caller can stop at a safe point.

    A second SIGINT while one is pending raises KeyboardInterrupt at once (a user who
    insists). Outside the main thread (dask workers) signals cannot be caught and
    nothing is installed.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.signum = signum
        if request.abandon is not None and request.abandon():
            raise AbandonedForStop(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
