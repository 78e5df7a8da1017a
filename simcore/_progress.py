"""Progress of long loops: a tqdm bar on a terminal or in a notebook, and one plain line
every ``SIMCORE_PROGRESS_SECONDS`` (default 60) seconds when stderr is a log file (batch
jobs, ``nohup``, dask workers), where a bar would be either hidden or a wall of ``\\r``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

DEFAULT_LOG_INTERVAL_S = 60.0


def progress(total: int, *, desc: str, unit: str, initial: int = 0, quiet: bool = False,
             stream=None, paused=None):
    """A progress reporter with tqdm's ``update(n)``, ``set_postfix(**values)`` and
    ``close()``: nothing if ``quiet``; a tqdm bar if ``stream`` (default stderr) is a
    terminal or the code runs in a Jupyter kernel; else :class:`LogProgress`, whose rate
    leaves out ``paused()`` seconds (e.g. :func:`watch_compiles`' count) if given."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return LogProgress(total, desc=desc, unit=unit, initial=initial, interval=None,
                           stream=stream)
    if "ipykernel" in sys.modules or _isatty(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, unit=unit, desc=desc, file=stream,
                    dynamic_ncols=True)
    try:
        interval = float(os.environ.get("SIMCORE_PROGRESS_SECONDS", DEFAULT_LOG_INTERVAL_S))
    except ValueError:  # a malformed setting must not stop a run: use the default
        interval = DEFAULT_LOG_INTERVAL_S
    return LogProgress(total, desc=desc, unit=unit, initial=initial, interval=interval,
                       stream=stream, paused=paused)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LogProgress:
    """Writes ``desc: done/total unit (p %), rate unit/s, elapsed h:mm:ss, left h:mm:ss``
    at most once per ``interval`` seconds (never if ``interval`` is None). The rate counts
    only this process's work, so a resumed run's estimate is not skewed by the steps done
    before, and leaves out the ``paused()`` seconds (compiling, not computing)."""

    def __init__(self, total: int, *, desc: str, unit: str, initial: int = 0,
                 interval: float | None, stream, clock=time.monotonic, paused=None):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.n = self._n0 = initial
        self._stream, self._clock = stream, clock
        self._paused = paused if paused is not None else (lambda: 0.0)
        self._paused0 = self._paused()  # paused before this report started does not count
        self._t0 = self._last = clock()
        self._postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.interval is None:
            return
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            print(self.line(now), file=self._stream, flush=True)

    def set_postfix(self, **values) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def line(self, now: float | None = None) -> str:
        """The report at time ``now`` (clock seconds; default: the clock now)."""
        elapsed = (self._clock() if now is None else now) - self._t0
        working = elapsed - (self._paused() - self._paused0)
        rate = (self.n - self._n0) / working if working > 0 else 0.0
        left = _hms((self.total - self.n) / rate) if rate > 0 else "?"
        pct = 100.0 * self.n / self.total if self.total else 100.0
        text = (f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.1f} %), "
                f"{rate:.3g} {self.unit}/s, elapsed {_hms(elapsed)}, left {left}")
        return text + (f" [{self._postfix}]" if self._postfix else "")

    def close(self) -> None:
        pass


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@contextlib.contextmanager
def watch_compiles(say):
    """Within the block, call ``say()`` when Numba starts its first compilation (a cold
    cache: the first run after installing or updating simcore compiles the engine's
    kernels, a minute or more, where a warm cache loads them in a fraction of a second)
    and count the seconds spent compiling. Yields the watch: calling it returns that count;
    its ``compiling`` is true while a compilation is under way. Cache loads are not
    compilations and stay silent."""
    from numba.core import event

    class _Watch(event.Listener):
        def __init__(self):
            self.seconds, self._depth, self._since, self._said = 0.0, 0, 0.0, False

        def on_start(self, ev):
            self._depth += 1  # before saying so: a stop signal may come as it is said
            if self._depth == 1:  # callees compile inside their callers' compilation
                self._since = time.monotonic()
                if not self._said:
                    self._said = True
                    say()

        def on_end(self, ev):  # also when the compilation raised
            self._depth -= 1
            if self._depth == 0:
                self.seconds += time.monotonic() - self._since

        def __call__(self) -> float:
            return self.seconds

        @property
        def compiling(self) -> bool:
            return self._depth > 0

    watch = _Watch()
    with event.install_listener("numba:compile", watch):
        yield watch
