"""One lock for simcore's own calls into netCDF-C.

netCDF-C (and the HDF5 library bundled with it) is not thread-safe, even across files,
and netCDF4-python releases the GIL in its calls: two runs in threads of one process (a
``ThreadPoolExecutor``, dask's threaded scheduler) whose files were written in-process
at the same time crashed it (segmentation fault while creating the files). The run
path's netCDF-C work in the caller's process — assembling a file after the last step,
reading a finished file's attributes or state (to check an output, extend it or start a
run from one of its frames) — holds
:data:`NETCDF_LOCK`, so simcore's runs in threads take turns there. A worker process
(:mod:`simcore.io.assembler`) has its own netCDF-C and needs no turn. Other threads of the
user's program that call netCDF4 or xarray meanwhile are not covered (they would race
with any netCDF user in the process).

The in-process assembly also runs netCDF-C or HDF5 in one thread while others encode
frames (creating the file beside the encoding; chunks encoded on a pool while this thread
writes them): :func:`no_automatic_collection` keeps the garbage collector from running
meanwhile, in any thread, since a collection finalises datasets the user left open in
reference cycles (xarray's), whose close calls netCDF-C at once (a crash, seen).
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

#: held around every netCDF-C call sequence of a run in the caller's process (re-entrant:
#: a reader called while it is held takes it again)
NETCDF_LOCK = threading.RLock()


@contextmanager
def no_automatic_collection():
    """Automatic garbage collection off while the block runs (restored after, if it was
    on); hold :data:`NETCDF_LOCK` around it, so that simcore's threads toggle it in turn."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
