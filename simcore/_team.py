"""A team of threads working through numbered units of work inside one parallel region.

A threaded step loop that starts a Numba parallel region per step pays the region's start
(~1.6 us on the Intel VM) and runs its serial parts (moves, copies) on one thread while
the others wait. A team instead enters one region per chunk of steps. The units form
phases (a phase's units may run side by side; each depends on every unit of the phases
before it): each member claims the next unit (``claim``), waits until the phases before
it are done (``wait_done``) and reports its unit (``mark_done``). Units are claimed in
order, so the lowest unit not done is always held by a running member: the scheme cannot
deadlock, even where the threading layer runs the members one after another on a single
thread (that member then does every unit). Which member does a unit never changes a
result: units are written so that each one's output depends only on the units it waits
for.

``counters`` is an int64 array of :data:`COUNTERS` entries (zeroed before the region);
the claim and done counts sit on separate cache lines.
"""

from __future__ import annotations

import os

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

COUNTERS = 16  # int64 entries: claims at 0, done units at 8 (64-byte lines apart)
_CLAIMED, _DONE = 0, 8
_SPINS_BEFORE_YIELD = 4096  # ~2-4 us of spinning, then the CPU is offered to others
_YIELD = "SwitchToThread" if os.name == "nt" else "sched_yield"


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


@njit(cache=True, inline="always")
def claim(counters):
    """The next unit's number (0, 1, 2, ... across the team)."""
    return _fetch_add(counters, _CLAIMED, 1)


@njit(cache=True, inline="always")
def mark_done(counters):
    """Count one unit done (after its results are written)."""
    _fetch_add(counters, _DONE, 1)


@njit(cache=True)
def wait_done(counters, units):
    """Wait until ``units`` units are done, where ``units`` is where a phase of the
    schedule starts: every unit waits for the start of its own phase, so no unit of a
    phase completes before all units ahead of it have, and ``units`` done then means the
    first ``units`` units are."""
    spins = 0
    while _load(counters, _DONE) < units:
        spins += 1
        if spins > _SPINS_BEFORE_YIELD:
            _yield_cpu()
