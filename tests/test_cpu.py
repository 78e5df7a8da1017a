"""The default thread count: cores that other processes leave idle."""

import json
import os
import subprocess
import sys
import time

import numba
import pytest

import simcore
import simcore.driver
from simcore._cpu import ForeignLoad, idle_threads, usable_cores

from conftest import script_foreign_load


@pytest.fixture(autouse=True)
def no_sample_from_the_import(monkeypatch):
    """The sample ``import simcore`` started (used by a first run within 2 s) began before
    these tests' loads: each test here probes for itself."""
    import simcore._cpu as cpu

    monkeypatch.setattr(cpu, "_early_probe", {})


def test_a_core_kept_busy_elsewhere_is_seen_on_that_core_only():
    core = usable_cores()[-1]
    busy = subprocess.Popen([sys.executable, "-c", (
        f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass")])
    try:
        time.sleep(0.3)  # let it start
        probe = ForeignLoad([core])
        time.sleep(0.3)
        assert probe.cores() > 0.8
        threads, seen = idle_threads(len(usable_cores()), probe_seconds=0.3, reuse_seconds=0)
        # at least our busy core is taken out (others may be busy too on a shared machine)
        assert seen > 0.8 and 1 <= threads <= max(1, len(usable_cores()) - 1)
    finally:
        busy.kill()
        busy.wait()
    assert idle_threads(1) == (1, 0.0)  # nothing to choose: no probe


def test_a_recent_probe_is_reused(monkeypatch):
    import simcore._cpu as cpu

    made = []

    class Counting(cpu.ForeignLoad):
        def __init__(self, cpus=None):
            made.append(cpus)
            super().__init__(cpus)

    monkeypatch.setattr(cpu, "ForeignLoad", Counting)
    monkeypatch.setattr(cpu, "_last_probe", {})
    most = max(2, len(usable_cores()))
    first = cpu.idle_threads(most, probe_seconds=0.01)
    assert cpu.idle_threads(most, probe_seconds=0.01) == first and len(made) == 1
    cpu.idle_threads(most, probe_seconds=0.01, reuse_seconds=0)
    assert len(made) == 2


def test_runs_take_the_idle_cores_and_say_so(tmp_path, capsys, monkeypatch):
    most = numba.config.NUMBA_NUM_THREADS
    monkeypatch.setattr(simcore.driver, "idle_threads", lambda m: (1, m - 1.0))
    before = numba.get_num_threads()
    try:
        simcore.run("abp", preset="homogeneous", steps=4, overrides={"n": 64},
                    out=tmp_path / "a.nc", quiet=False)
        assert numba.get_num_threads() == 1
        err = capsys.readouterr().err
        assert ("running on 1 thread(s)" in err) == (most > 1)
    finally:
        numba.set_num_threads(before)

    def fail(m):
        raise AssertionError("the serial hard-disc engine needs no thread count")

    monkeypatch.setattr(simcore.driver, "idle_threads", fail)
    simcore.run("harddisc", overrides={"n": 20, "t_end": 1.0, "frame_dt": 1.0},
                out=tmp_path / "h.nc")


def test_the_writer_s_worker_is_not_other_processes_load(monkeypatch):
    """A busy helper process of ours (the writer's worker, importing while a run probes
    the idle cores) counts as this process's own CPU time, not as a busy core: a command
    line run once took its own worker's imports for another process and ran on 1 thread
    of 2. Two probes over the same interval, with and without the helper registered."""
    import simcore._cpu as cpu

    core = usable_cores()[-1]
    helper = subprocess.Popen([sys.executable, "-c", (
        f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass")])
    try:
        time.sleep(0.3)  # let it start
        monkeypatch.setattr(cpu, "OWN_HELPERS", set())
        strangers = ForeignLoad([core])
        monkeypatch.setattr(cpu, "OWN_HELPERS", {helper.pid})
        tick = os.sysconf("SC_CLK_TCK")
        helper_seconds = cpu._helpers_cpu_seconds(tick)
        ours = ForeignLoad([core])
        time.sleep(0.3)
        with_helper = ours.cores()
        # the core's share the helper got (all of it on a quiet machine)
        helper_share = (cpu._helpers_cpu_seconds(tick) - helper_seconds) / ours.age()
        monkeypatch.setattr(cpu, "OWN_HELPERS", set())
        as_stranger = strangers.cores()
    finally:
        helper.kill()
        helper.wait()
    assert helper_share > 0.3  # it ran, so the probes can tell it apart
    # the same interval: only the helper differs
    assert as_stranger - with_helper > 0.8 * helper_share, (as_stranger, with_helper,
                                                            helper_share)


def test_the_writer_s_worker_counts_as_this_process_s_own(monkeypatch):
    """The writer's worker, started before a run probes the idle cores (its imports
    overlap the probe), is registered as our helper while it lives: a command-line run
    once took its imports for another process's load and ran on 1 thread of 2."""
    import simcore.io.assembler as assembler
    from simcore._cpu import OWN_HELPERS

    assembler.release_idle_workers()
    monkeypatch.setattr(assembler, "_spare_core", lambda: True)
    assembler.prestart(assembler.BACKGROUND_MIN_BYTES)
    try:
        pids = {worker.proc.pid for worker in assembler._idle}
        assert len(pids) == 1 and pids <= OWN_HELPERS
    finally:
        assembler.release_idle_workers()
    assert OWN_HELPERS.isdisjoint(pids)


def test_a_probe_started_early_spares_the_run_its_wait(monkeypatch):
    """The command line starts the load sample before its imports (start_probe); the run's
    thread choice then uses it without sleeping, once, and only while it is recent: an
    old one is replaced by a fresh sample of the full length."""
    import simcore._cpu as cpu

    slept = []
    monkeypatch.setattr(cpu, "_last_probe", {})
    real_sleep = time.sleep
    monkeypatch.setattr(cpu.time, "sleep", lambda s: (slept.append(s), real_sleep(s)))
    most = max(2, len(usable_cores()))
    cpu.start_probe()
    real_sleep(cpu.PROBE_SECONDS + 0.02)  # the imports
    cpu.idle_threads(most)
    assert slept == [0.0] and cpu._early_probe == {}
    cpu._last_probe.clear()
    cpu.idle_threads(most)  # used once: a sample of its own now
    assert slept[1] == cpu.PROBE_SECONDS
    monkeypatch.setattr(cpu, "EARLY_PROBE_MAX_SECONDS", 0.01)
    cpu.start_probe()
    real_sleep(0.05)  # too old: not taken
    cpu._last_probe.clear()
    cpu.idle_threads(most)
    assert slept[2] == cpu.PROBE_SECONDS
    cpu.start_probe()
    real_sleep(cpu.PROBE_SECONDS)
    cpu.idle_threads(most, reuse_seconds=0)  # "sample now": not the early one either
    assert slept[3] == cpu.PROBE_SECONDS


def test_import_starts_the_probe_and_a_forked_child_drops_it():
    """``import simcore`` starts the load sample (a script's or the command line's first run
    then waits for none); a forked child, whose own CPU time restarts from zero, must not
    use its parent's (its imports would read as other processes' load)."""
    code = ("import os, simcore, simcore._cpu as c; c.LoadFollower(2)\n"
            "n = (len(c._early_probe), len(c._follow_windows)); pid = os.fork()\n"
            "if pid == 0: os._exit(len(c._early_probe) + 10 * len(c._follow_windows))\n"
            "print(*n, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "1", "0"]  # the follower's open window is dropped too


_SPINNING_WORKERS_CHILD = r"""
import json, os, sys, threading, time
import numpy as np
import numba
from numba import prange
import simcore
from simcore._cpu import release_spinning_workers

def native_threads():
    # threads that are not Python's: OpenBLAS's (started at import) and OpenMP's workers
    python = {t.native_id for t in threading.enumerate()}
    return {int(tid) for tid in os.listdir("/proc/self/task")} - python

def settle(expected):
    # simcore's own Python threads (freeing a replaced file's blocks) are joined first: a
    # Python thread that has left threading's list but not yet the kernel's would count
    # as native. An ended worker leaves /proc/self/task a moment after the call returns,
    # so the reading is retried for up to 10 s; the last reading is the one returned.
    for thread in threading.enumerate():
        if thread.name.startswith("simcore-"):
            thread.join(10.0)
    deadline = time.monotonic() + 10.0
    while True:
        seen = native_threads()
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.01)

@numba.njit(parallel=True)
def add_one(a):
    for i in prange(a.size):
        a[i] += 1.0

before = native_threads()
add_one(np.zeros(1000))
layer = numba.threading_layer()
with_pool = native_threads()
release_spinning_workers()
released = settle(before)
add_one(np.zeros(1000))  # the pool starts again
restarted = native_threads()
simcore.run("couzin", out=sys.argv[1], steps=200, write_every=10, threads=2, quiet=True)
after_run = settle(before)
print(json.dumps({"layer": layer, "pool": len(with_pool - before),
                  "released": len(released - before), "restarted": len(restarted - before),
                  "after_run": len(after_run - before)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libgomp and /proc: Linux")
def test_a_run_ends_its_openmp_workers_so_none_spins_beside_the_file(tmp_path):
    """After the last step the writing of the file has the cores: the run ends libgomp's
    worker threads (which would spin for their next parallel region for milliseconds)
    instead of leaving them; the next parallel region starts them again."""
    env = dict(os.environ, NUMBA_NUM_THREADS="2", NUMBA_THREADING_LAYER="omp")
    proc = subprocess.run([sys.executable, "-c", _SPINNING_WORKERS_CHILD,
                           str(tmp_path / "c.nc")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["layer"] == "omp"
    assert seen["pool"] == 1 and seen["restarted"] == 1  # one worker beside the caller
    assert seen["released"] == 0 and seen["after_run"] == 0


def test_a_running_kernel_follows_other_processes_load(monkeypatch):
    """LoadFollower, fed scripted loads of other processes (cores) on 2 cores: a thread
    dropped from half a busy core on, kept while the load stays, given back once it falls
    under a quarter core, never more than the run started with, no change within a window;
    each reading becomes the next run's start probe."""
    import simcore._cpu as cpu

    readings = []
    script_foreign_load(monkeypatch, readings)
    follower = cpu.LoadFollower(2)
    script = [(0.1, None), (0.45, None), (0.7, 1), (1.0, None), (0.4, None), (0.3, None),
              (0.2, 2), (0.0, None), (1.9, 1), (0.0, 2)]
    for load, expected in script:
        readings.append(load)
        changed = follower.check()
        assert (None if changed is None else changed[0]) == expected, (load, changed)
        if changed is not None:
            assert changed[1] == load
        assert cpu._last_probe[(0, 1)][1] == load
    follower._load.age_seconds = 0.5 * cpu.FOLLOW_WINDOW_SECONDS
    readings.append(1.0)
    assert follower.check() is None and readings == [1.0]  # no reading inside a window
    started_on_one = cpu.LoadFollower(1)
    readings[:] = [0.0]
    assert started_on_one.check() is None  # never above the starting count


def test_a_run_started_on_fewer_threads_takes_the_idle_cores_later(monkeypatch):
    """A follower made below its ceiling (a run whose start found a core busy) raises the
    count once the load is gone."""
    import simcore._cpu as cpu

    script_foreign_load(monkeypatch, [0.0])
    assert cpu.LoadFollower(2, 1).check() == (2, 0.0)


def test_runs_shorter_than_a_window_continue_the_last_run_s_window(monkeypatch):
    """A run's follower continues the window the process's previous run left open (a loop
    of runs shorter than a window then still gets readings), unless it began more than
    FOLLOW_CONTINUE_SECONDS ago (it would dilute a load that began since)."""
    import simcore._cpu as cpu

    script_foreign_load(monkeypatch, [1.0])
    first = cpu.LoadFollower(2)
    window = first._load
    window.age_seconds = 0.5 * cpu.FOLLOW_WINDOW_SECONDS  # a short run ends inside it
    assert first.check() is None
    second = cpu.LoadFollower(2)
    assert second._load is window
    window.age_seconds = cpu.FOLLOW_WINDOW_SECONDS  # the next run completes the window
    assert second.check() == (1, 1.0)
    later = cpu._follow_windows[(0, 1)]
    assert later is not window and cpu.LoadFollower(2)._load is later
    later.age_seconds = 2 * cpu.FOLLOW_CONTINUE_SECONDS  # left open too long ago
    assert cpu.LoadFollower(2)._load is not later


def test_a_run_keeps_one_thread_while_its_threads_step_slower():
    """SpeedFollower on 2 threads, fed per-call step times (s per step, calls of 1 s): a
    steady step changes nothing; a step at 1.5x its best is tried on one thread, which is
    kept (with a line for the log) only if it steps in under 0.8x the threads' time, and
    the threads are tried again after RETRY_THREADS_SECONDS, kept when they beat one
    thread; a state that got slower for both costs one trial and becomes the new best."""
    import simcore._cpu as cpu

    speed = cpu.SpeedFollower(2)
    t = 0.0

    def call(threads, per_step):  # a call of 0.1 s
        speed.observe(threads, 0.1, round(0.1 / per_step))
        return speed.check(now=t)

    assert call(2, 1e-3) is None  # the first call (a compilation may inflate it)
    assert [call(2, x) for x in (2e-4, 2.2e-4, 2.9e-4)] == [None, None, None]
    assert call(2, 3e-4) == (2 - 1, None)  # 1.5x the best: one call on one thread
    threads, line = call(1, 2.2e-4)  # 0.73x the threads' time: one thread kept
    assert threads == 1 and "2 threads stepped 1.4x slower than one thread" in line
    t += cpu.RETRY_THREADS_SECONDS - 1
    assert call(1, 2.3e-4) is None  # still on one thread
    t += 1
    assert call(1, 2.4e-4) == (2, None)  # time to try the threads again
    assert call(2, 5e-4) == (1, None)  # still slower: back to one thread, without a line
    t += cpu.RETRY_THREADS_SECONDS
    assert call(1, 2.4e-4) == (2, None)
    threads, line = call(2, 1.5e-4)  # faster than one thread again
    assert threads == 2 and "faster than one again" in line
    assert call(2, 1.6e-4) is None
    # the state got slower for any thread count: one trial, then back on 2 with a new best
    assert call(2, 3e-4) == (1, None)
    assert call(1, 5e-4) == (2, None)
    assert [call(2, x) for x in (3.1e-4, 3.2e-4)] == [None, None]


def test_speed_follower_ignores_short_calls_single_threads_and_load_changes():
    """Calls under MIN_TIMED_CALL_SECONDS are not compared; a run on one thread is left
    alone; a new count from the load (LoadFollower) starts the comparison afresh."""
    import simcore._cpu as cpu

    speed = cpu.SpeedFollower(2)
    speed.observe(2, 1.0, 1000)
    assert speed.check(now=0.0) is None
    speed.observe(2, 0.5 * cpu.MIN_TIMED_CALL_SECONDS, 1)  # a short, slow-looking call
    assert speed.check(now=0.0) is None
    speed.observe(2, 1.0, 100)  # 10x slower, timed
    assert speed.check(now=0.0) == (1, None)
    speed.allowed(1)  # the load took a core meanwhile
    speed.observe(1, 1.0, 1000)
    assert speed.check(now=0.0) is None
    one = cpu.SpeedFollower(1)
    for per_call_steps in (1000, 10):
        one.observe(1, 1.0, per_call_steps)
        assert one.check(now=0.0) is None


def test_a_threaded_run_tries_one_thread_early_and_every_minute():
    """A run that starts while its threads step slowly has no faster step to compare
    with: it tries one thread FIRST_TRIAL_SECONDS after its first timed call and every
    TRIAL_EVERY_SECONDS after a trial the threads won."""
    import simcore._cpu as cpu

    speed = cpu.SpeedFollower(2)

    def call(now, threads, per_step):  # a call of 0.1 s
        speed.observe(threads, 0.1, round(0.1 / per_step))
        return speed.check(now=now)

    assert call(0.0, 2, 3e-4) is None  # slow from the start: nothing to compare with
    assert call(cpu.FIRST_TRIAL_SECONDS - 0.1, 2, 3e-4) is None
    assert call(cpu.FIRST_TRIAL_SECONDS, 2, 3e-4) == (1, None)
    threads, line = call(cpu.FIRST_TRIAL_SECONDS + 1, 1, 2e-4)
    assert threads == 1 and "1.5x slower" in line
    quick = cpu.SpeedFollower(2)  # a host that runs the threads together
    quick.observe(2, 0.1, 500)
    assert quick.check(now=0.0) is None
    quick.observe(2, 0.1, 500)
    assert quick.check(now=cpu.FIRST_TRIAL_SECONDS) == (1, None)
    quick.observe(1, 0.1, 300)  # one thread slower: back to two, next trial in a minute
    assert quick.check(now=cpu.FIRST_TRIAL_SECONDS + 1) == (2, None)
    for now in (10.0, cpu.FIRST_TRIAL_SECONDS + 1 + cpu.TRIAL_EVERY_SECONDS):
        quick.observe(2, 0.1, 500)
        assert quick.check(now=now) == (None if now == 10.0 else (1, None))
    long_calls = cpu.SpeedFollower(2)  # calls of 1 s: trials TRIAL_SPACING calls apart
    long_calls.observe(2, 1.0, 5000)
    assert long_calls.check(now=0.0) is None
    long_calls.observe(2, 1.0, 5000)
    assert long_calls.check(now=cpu.TRIAL_SPACING - 1.0) is None
    long_calls.observe(2, 1.0, 5000)
    assert long_calls.check(now=cpu.TRIAL_SPACING) == (1, None)
