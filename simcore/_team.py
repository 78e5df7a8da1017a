"""A team of threads working through numbered units of work inside one parallel region.

A threaded step loop that starts a Numba parallel region per step pays the region's start
(~1.6 us on the Intel VM) and runs its serial parts (moves, copies) on one thread while
the others wait. A team instead enters one region per kernel call. The units form
phases (a phase's units may run side by side; each depends on every unit of the phases
before it): each member claims the next unit (``claim``), waits until the phases before
it are done (``wait_done``) and reports its unit (``mark_done``). Units are claimed in
order, so the lowest unit not done is always held by a running member: the scheme cannot
deadlock, even where the threading layer runs the members one after another on a single
thread (that member then does every unit). Which member does a unit never changes a
result: units are written so that each one's output depends only on the units it waits
for.

A member waiting for a phase spins, then offers its core (``sched_yield``), then, after
~0.1-0.5 ms without progress, sleeps (Linux's futex, woken by the unit's ``mark_done``):
a member can only wait that long when another one has lost its core (a busy process
beside the run: the worker starting, a compile, the user's own work), and a spinning or
yielding member keeps its core busy, so the scheduler cannot move the preempted member
there. Measured: N = 250 dewi-kadita steps on 2 threads beside one busy process, 346-391
-> 221-264 us a step (alone: ~75-100; benchmarks/RESULTS.md). Quiet runs almost never
sleep. Elsewhere (macOS, Windows) members keep yielding.

``counters`` is an int64 array of :data:`COUNTERS` entries (zeroed before the region);
the claim and done counts sit on separate cache lines, the count of sleeping members beside
the done count.
"""

from __future__ import annotations

import os
import platform
import sys

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

COUNTERS = 16  # int64 entries: claims at 0, done units at 8 (64-byte lines apart)
_CLAIMED, _DONE, _SLEEPERS = 0, 8, 12  # the sleepers beside the done count (read together)
_SPINS_BEFORE_YIELD = 4096  # ~2-4 us of spinning, then the CPU is offered to others
_YIELDS_BEFORE_SLEEP = 1024  # ~0.1-0.5 ms of offering it, then the member sleeps
_YIELD = "SwitchToThread" if os.name == "nt" else "sched_yield"
# Linux's futex system call number (0: none here; members then keep yielding)
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine(), 0) \
    if sys.platform.startswith("linux") else 0
_FUTEX_WAIT, _FUTEX_WAKE = 128, 129  # FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE
_SLEEP_NS = 1_000_000  # a sleeping member looks again after this long, woken or not


def _element_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, data, [index])


@intrinsic
def _fetch_add(typingctx, array, index, value):
    """array[index] += value atomically (sequentially consistent); returns the old value."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        add = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, add, "seq_cst")

    return types.int64(array, index, value), codegen


@intrinsic
def _load(typingctx, array, index):
    """array[index], read atomically (sequentially consistent: sees what the other
    members wrote before they counted their units done)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return types.int64(array, index), codegen


@intrinsic
def _yield_cpu(typingctx):
    """Offer the CPU to another thread (sched_yield; SwitchToThread on Windows)."""

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            _YIELD)
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


def _futex(builder, context, signature, args, op, value, timeout):
    """syscall(SYS_futex, &array[index] (its low 32 bits), op, value, timeout, 0, 0)."""
    ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
    word = builder.ptrtoint(ptr, ir.IntType(64))
    i64 = ir.IntType(64)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64], var_arg=True),
                                        "syscall")
    builder.call(fn, [i64(_SYS_FUTEX), word, i64(op), value, timeout, i64(0), i64(0)])


@intrinsic
def _futex_wait(typingctx, array, index, expected):
    """Sleep while the 32-bit word at array[index] (its low half) equals ``expected``, at
    most :data:`_SLEEP_NS` (Linux's futex; returns at once if the word differs)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        timespec = cgutils.alloca_once(builder, ir.LiteralStructType([i64, i64]))
        builder.store(ir.Constant(ir.LiteralStructType([i64, i64]), [0, _SLEEP_NS]), timespec)
        value = builder.zext(builder.trunc(context.cast(builder, args[2], signature.args[2],
                                                        types.int64), ir.IntType(32)), i64)
        _futex(builder, context, signature, args, _FUTEX_WAIT, value,
               builder.ptrtoint(timespec, i64))
        return context.get_dummy_value()

    return types.none(array, index, expected), codegen


@intrinsic
def _futex_wake(typingctx, array, index):
    """Wake every member sleeping on array[index] (:func:`_futex_wait`)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        _futex(builder, context, signature, args, _FUTEX_WAKE, ir.IntType(64)(2**31 - 1),
               ir.IntType(64)(0))
        return context.get_dummy_value()

    return types.none(array, index), codegen


@njit(cache=True, inline="always")
def claim(counters):
    """The next unit's number (0, 1, 2, ... across the team)."""
    return _fetch_add(counters, _CLAIMED, 1)


@njit(cache=True, inline="always")
def mark_done(counters):
    """Count one unit done (after its results are written), waking any sleeping member."""
    _fetch_add(counters, _DONE, 1)
    if _SYS_FUTEX and _load(counters, _SLEEPERS) > 0:
        _futex_wake(counters, _DONE)


@njit(cache=True)
def wait_done(counters, units):
    """Wait until ``units`` units are done, where ``units`` is where a phase of the
    schedule starts: every unit waits for the start of its own phase, so no unit of a
    phase completes before all units ahead of it have, and ``units`` done then means the
    first ``units`` units are."""
    spins = 0
    while _load(counters, _DONE) < units:
        spins += 1
        if spins > _SPINS_BEFORE_YIELD + _YIELDS_BEFORE_SLEEP and _SYS_FUTEX:
            _fetch_add(counters, _SLEEPERS, 1)
            done = _load(counters, _DONE)  # after announcing the sleep: see mark_done
            if done < units:
                _futex_wait(counters, _DONE, done)
            _fetch_add(counters, _SLEEPERS, -1)
        elif spins > _SPINS_BEFORE_YIELD:
            _yield_cpu()
