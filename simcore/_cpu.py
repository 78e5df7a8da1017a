"""How busy the cores are with other processes, and how many threads a run should use.

Multi-threaded kernels (OpenMP workers that spin while they wait for each other) slow down
badly when another process holds one of their cores: measured for ABP at N = 16384 on 2
cores with one core busy elsewhere, 2 threads took 110 ns per particle-step against 74 ns
on 1 thread (45 ns on 2 threads when the machine is quiet; benchmarks/threads_under_load.py,
benchmarks/RESULTS.md). So the default thread count is the number of this process's cores
that are not busy: at a run's start (:func:`idle_threads`) and, while it runs, between its
kernel calls (:class:`LoadFollower`), which also keeps a run on one thread while its
threads step slower than one (:class:`SpeedFollower`: a VM whose vCPUs do not run
together).
"""

from __future__ import annotations

import functools
import math
import os
import time

try:
    import resource
except ImportError:  # Windows: no rusage; own time falls back to process_time
    resource = None

PROBE_SECONDS = 0.1  # sample length of the start-of-run probe (/proc/stat ticks are 10 ms)
PROBE_REUSE_SECONDS = 30.0  # a loop of short runs probes once per this interval, not per run
# a probe started at import (start_probe) serves a first run within this many seconds (a
# script's, the command line's); later, a load that began since would be diluted in it
EARLY_PROBE_MAX_SECONDS = 2.0
_last_probe: dict = {}
_early_probe: dict = {}
# the follower's current window per set of cores, continued by the process's next run
_follow_windows: dict = {}


#: process ids of this process's own helper processes (the NetCDF writer's worker,
#: :mod:`simcore.io.assembler`): :class:`ForeignLoad` counts their CPU time as this
#: process's, not as other processes' load
OWN_HELPERS: set[int] = set()


def _helpers_cpu_seconds(tick: float) -> float:
    """CPU seconds used so far by the live :data:`OWN_HELPERS` that are this process's
    children (a reused process id of a stranger is not counted)."""
    total = 0.0
    for pid in list(OWN_HELPERS):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after the command's name
            if int(fields[1]) == os.getpid():  # ppid; utime and stime in ticks
                total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            pass
    return total


class ForeignLoad:
    """CPU time used by other processes (and stolen by the hypervisor) since creation, on
    the cores ``cpus`` (default: the whole machine).

    Read from /proc/stat minus this process's, its finished children's and its live
    helper processes' (:data:`OWN_HELPERS`) own CPU time. Where /proc/stat does not exist
    (macOS, Windows) every reading is 0.
    """

    def __init__(self, cpus=None):
        self.cpus = None if cpus is None else {int(c) for c in cpus}
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        busy = steal = 0
        try:
            with open("/proc/stat") as f:
                for line in f:
                    if not line.startswith("cpu"):
                        break
                    name, *ticks = line.split()
                    mine = name == "cpu" if self.cpus is None else (
                        name != "cpu" and int(name[3:]) in self.cpus)
                    if mine:
                        user, nice, system, _, _, irq, softirq, stolen = map(int, ticks[:8])
                        busy += user + nice + system + irq + softirq
                        steal += stolen
        except OSError:
            pass
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        if resource is None:
            own = time.process_time()
        else:
            own = sum(r.ru_utime + r.ru_stime for r in (
                resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN)))
        own += _helpers_cpu_seconds(tick)
        return time.perf_counter(), busy / tick, steal / tick, own

    def age(self) -> float:
        """Seconds since creation."""
        return time.perf_counter() - self._start[0]

    def since(self) -> tuple[float, float]:
        """(cores used by other processes, cores stolen), averaged since creation."""
        t0, busy0, steal0, own0 = self._start
        t1, busy1, steal1, own1 = self._sample()
        wall = max(t1 - t0, 1e-9)
        foreign = max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
        return foreign, (steal1 - steal0) / wall

    def cores(self) -> float:
        """Mean number of cores used by other processes plus stolen, since creation."""
        return sum(self.since())

    def note(self) -> str:
        """Mean number of cores used by other processes and stolen, since creation."""
        foreign, stolen = self.since()
        return (f"other processes used {foreign:.2f} cores on average during the run, "
                f"the hypervisor stole {stolen:.2f} (0 = quiet machine)")


def start_probe() -> None:
    """Start the sample of other processes' load on this process's cores now (``import
    simcore`` does, before its imports), so that a first run soon after (the command
    line's, a script's) need not wait :data:`PROBE_SECONDS` in :func:`idle_threads` for a
    sample of its own: the imports (~0.35 s of one core, counted as this process's own
    time) are the sample. Used once, if at most :data:`EARLY_PROBE_MAX_SECONDS` old; a
    forked child drops it (its own CPU time restarts from zero)."""
    cores = usable_cores()
    _early_probe[tuple(cores)] = ForeignLoad(cores)


def _forget_samples() -> None:
    """In a forked child: its own CPU time restarts from zero, so samples begun in the
    parent would count the parent's time as other processes' load."""
    _early_probe.clear()
    _follow_windows.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_samples)


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity; all cores where unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def idle_threads(max_threads: int, probe_seconds: float = PROBE_SECONDS,
                 reuse_seconds: float = PROBE_REUSE_SECONDS) -> tuple[int, float]:
    """(threads to use, cores of ours busy elsewhere): the usable cores minus those that
    other processes kept busy during a ``probe_seconds`` sample (a core counts as busy
    from half use on), at least 1 and at most ``max_threads``. A probe of the same cores
    younger than ``reuse_seconds`` is reused (a script looping over short runs would
    otherwise pay the sample on every run), and so is the sample ``import simcore`` started
    (:func:`start_probe`) when it is recent; ``reuse_seconds = 0`` samples now."""
    cores = usable_cores()
    if max_threads <= 1:
        return 1, 0.0
    now = time.monotonic()
    last = _last_probe.get(tuple(cores))
    if last is not None and now - last[0] < reuse_seconds:
        busy = last[1]
    else:
        probe = _early_probe.pop(tuple(cores), None)
        age = probe.age() if probe is not None else math.inf
        if reuse_seconds > 0 and age <= EARLY_PROBE_MAX_SECONDS:
            time.sleep(max(0.0, probe_seconds - age))  # it sampled the imports
        else:
            probe = ForeignLoad(cores)
            time.sleep(probe_seconds)
        busy = probe.cores()
        _last_probe[tuple(cores)] = (time.monotonic(), busy)
    free = int(len(cores) - busy + 0.5)
    return max(1, min(max_threads, free)), busy


#: seconds of other processes' load one :class:`LoadFollower` reading averages
#: (/proc/stat counts in 10 ms ticks; shorter bursts, a shell command, average out)
FOLLOW_WINDOW_SECONDS = 0.25
#: a window the process's previous run left open is continued by the next run's follower
#: if it began at most this long ago (runs shorter than a window still get readings;
#: an older one would dilute a load that began since)
FOLLOW_CONTINUE_SECONDS = 2.0


class LoadFollower:
    """Keeps a running threaded kernel at the cores other processes leave idle: call
    :meth:`check` between kernel calls; every :data:`FOLLOW_WINDOW_SECONDS` it reads the
    load other processes put on this process's cores and says when to lower the thread
    count (a core became busy) or to raise it (a core became idle), up to ``most``.

    A threaded step whose thread lost its core to another process waits for it, up to a
    scheduler tick per parallel region: ABP at N = 16384 beside one CPU-bound process ran
    1.51 ms a step on 2 threads against 0.64 on 1 (benchmarks/RESULTS.md), and the
    start-of-run choice (:func:`idle_threads`) cannot see load that begins later. Results
    do not depend on the thread count (every threaded kernel gives the serial bits), so the
    count may change between any two calls; the caller keeps the kernel's threaded path
    (at one thread it runs as fast as the serial one). A thread is dropped for each core
    busy from half use on, as in :func:`idle_threads`, and given back only once that load
    falls under a quarter of a core, so a load near the threshold does not flip the count
    every window. A window the process's previous run left open (at most
    :data:`FOLLOW_CONTINUE_SECONDS` old) is continued, so that a loop of runs shorter than
    a window follows the load too."""

    def __init__(self, most: int, threads: int | None = None):
        self.most = most
        self.threads = most if threads is None else threads  # the count now
        self.cores = usable_cores()
        self._key = tuple(self.cores)  # of the probe and window caches
        window = _follow_windows.get(self._key)
        if window is None or window.age() > FOLLOW_CONTINUE_SECONDS:
            window = _follow_windows[self._key] = ForeignLoad(self.cores)
        self._load = window
        #: whether the threads step faster than one thread (:class:`SpeedFollower`)
        self.speed = SpeedFollower(self.threads)

    def check(self) -> tuple[int, float] | None:
        """(new thread count, cores busy elsewhere) when the count should change now (the
        caller sets it: ``numba.set_num_threads``), else None."""
        if self._load.age() < FOLLOW_WINDOW_SECONDS:
            return None
        busy = self._load.cores()
        self._load = _follow_windows[self._key] = ForeignLoad(self.cores)
        _last_probe[self._key] = (time.monotonic(), busy)  # for the next run's start
        free = len(self.cores) - busy
        threads = int(free + 0.5)
        if threads >= self.threads:
            threads = max(self.threads, int(free + 0.25))
        threads = max(1, min(self.most, threads))
        if threads == self.threads:
            return None
        self.threads = threads
        self.speed.allowed(threads)
        return threads, busy


#: a threaded call whose step takes this many times the best step at that thread count
#: is followed by one call on a single thread, to compare
SLOW_STEP_RATIO = 1.5
#: the single thread is kept when its step takes less than this fraction of the threads'
ONE_THREAD_WINS = 0.8
#: while a run keeps one thread for speed, it tries its threads again this often (s)
RETRY_THREADS_SECONDS = 5.0
#: calls shorter than this (s) are not timed for the comparison (per-call overheads)
MIN_TIMED_CALL_SECONDS = 0.05
#: a threaded run tries one call on one thread this long (s) after its first timed call,
#: then every TRIAL_EVERY_SECONDS: a run that starts while the host runs its threads
#: apart has no faster step of its own to notice the slowdown by. Both are at least
#: TRIAL_SPACING calls' time, so that a trial costs at most ~1/TRIAL_SPACING of a
#: run whose calls are long
FIRST_TRIAL_SECONDS = 3.0
TRIAL_EVERY_SECONDS = 60.0
TRIAL_SPACING = 30


class SpeedFollower:
    """Keeps a threaded run on one thread while its threads step slower than one thread
    does, which no load reading shows: on a VM whose vCPUs the hypervisor does not run at
    the same time, every parallel region waits for the other vCPU, and a 2-thread ABP step
    at N = 16384 ran at 22-30 M particle-steps/s against 45-55 on one thread (for phases of
    5-60 s, on a 2-vCPU Zen 4 VM whose steal counter read 0; benchmarks/RESULTS.md,
    session 40).

    The caller reports each kernel call's wall time (:meth:`observe`) and asks
    :meth:`check` between calls. A call at ``threads`` > 1 whose seconds per step reach
    :data:`SLOW_STEP_RATIO` times the best seen at that count is followed by one trial call
    on one thread, and so is a call :data:`FIRST_TRIAL_SECONDS` into the run and every
    :data:`TRIAL_EVERY_SECONDS` after (a run that starts in such a phase has no faster
    step to compare with). One thread is kept if it steps in under
    :data:`ONE_THREAD_WINS` of the threads' time; the threads are then tried again every
    :data:`RETRY_THREADS_SECONDS`. On a host that runs its threads together a trial costs
    one call at one thread's speed a minute (ABP at N = 16384: a call of ~50 ms, ~20 ms
    lost), and a state that legitimately slows the step costs one trial, whose time
    becomes the new best. Results do not depend on the thread count."""

    def __init__(self, threads: int):
        self.threads = threads  # the count the load allows (the caller's)
        self._best = math.inf  # seconds per step at self.threads
        self._mode = "threads"  # or "trying one", "one", "trying threads"
        self._compare = math.inf  # the per-step time a trial is compared with
        self._since = 0.0  # monotonic time the run went to one thread
        self._next_trial: float | None = None  # monotonic time of the next planned trial
        self._last: tuple[int, float, float] | None = None  # (threads, s per step, s)

    def allowed(self, threads: int) -> None:
        """The load now allows ``threads``: start again from it (no comparison carries
        over to another thread count)."""
        self.__init__(threads)

    def observe(self, threads: int, seconds: float, steps: int) -> None:
        """A kernel call on ``threads`` threads advanced ``steps`` steps in ``seconds``."""
        if steps > 0 and seconds >= MIN_TIMED_CALL_SECONDS:
            self._last = (threads, seconds / steps, seconds)

    def check(self, now: float | None = None) -> tuple[int, str | None] | None:
        """(thread count, a line for the run's log or None) when the count should change
        before the next call, else None."""
        now = time.monotonic() if now is None else now
        last, self._last = self._last, None
        if self.threads <= 1:
            return None
        mode = self._mode
        if mode == "one":
            if last is not None and last[0] == 1:
                self._compare = last[1]
            if now - self._since >= RETRY_THREADS_SECONDS and self._compare < math.inf:
                self._mode = "trying threads"
                return self.threads, None
            return None
        if last is None:
            return None
        threads, per_step, seconds = last
        if mode == "threads" and threads == self.threads:
            if self._next_trial is None:
                self._next_trial = now + max(FIRST_TRIAL_SECONDS, TRIAL_SPACING * seconds)
            if per_step >= SLOW_STEP_RATIO * self._best or now >= self._next_trial:
                self._mode, self._compare = "trying one", per_step
                return 1, None
            self._best = min(self._best, per_step)
        elif mode == "trying one" and threads == 1:
            if per_step < ONE_THREAD_WINS * self._compare:
                self._mode, self._since, slower = "one", now, self._compare / per_step
                self._compare = per_step
                return 1, (
                    f"{self.threads} threads stepped {slower:.1f}x slower than one thread "
                    "(likely a VM whose vCPUs the host does not run together): continuing "
                    f"on 1 thread, trying {self.threads} again every "
                    f"{RETRY_THREADS_SECONDS:g} s (results do not depend on it).")
            # the threads are faster (or the state got slower for any count: its time is
            # the new best)
            self._mode, self._best = "threads", self._compare
            self._next_trial = now + max(TRIAL_EVERY_SECONDS, 2 * TRIAL_SPACING * seconds)
            return self.threads, None
        elif mode == "trying threads" and threads == self.threads:
            if per_step < self._compare:
                self._mode, self._best = "threads", min(self._best, per_step)
                self._next_trial = now + max(TRIAL_EVERY_SECONDS, 2 * TRIAL_SPACING * seconds)
                return self.threads, (f"{self.threads} threads step faster than one again: "
                                      f"continuing on {self.threads} threads.")
            self._mode, self._since = "one", now
            return 1, None
        return None


def release_spinning_workers() -> None:
    """End the OpenMP worker threads of the calling thread's parallel regions, so that none
    keeps spinning after a run's last step (libgomp's ``omp_pause_resource_all``).

    After its last parallel region a libgomp worker waits for the next one spinning on its
    core for ~5-20 ms (``GOMP_SPINCOUNT``'s 300 000 pauses), while the run's file is
    written: a spinning worker took ~5 ms of a core in the Couzin defaults' ~20 ms finish
    (2 cores), and ending it made the finish 3-6 ms shorter (benchmarks/RESULTS.md). The
    next parallel region starts the workers again (~0.1 ms). Other threads' regions are
    not touched (libgomp keeps one pool per thread that starts regions). A no-op where
    Numba's threading layer is not OpenMP or has not started, and where the OpenMP
    library is not libgomp on Linux (found among the process's mapped files)."""
    import numba

    try:
        if numba.threading_layer() != "omp":
            return
    except ValueError:  # no parallel region has run in this process
        return
    pause = _omp_pause()
    if pause is not None:
        pause(1)  # omp_pause_soft: ICVs kept, threads ended


@functools.cache
def _omp_pause():
    """libgomp's ``omp_pause_resource_all`` of the copy this process has loaded, or None."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps}
    except OSError:
        return None
    for path in sorted(p for p in paths if os.path.basename(p).startswith("libgomp")):
        try:
            pause = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):  # unloadable, or older than OpenMP 5.0
            continue
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        return pause
    return None
