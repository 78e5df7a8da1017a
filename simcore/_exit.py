"""Ending a command-line process without the interpreter's teardown.

After a command's last output, CPython frees every module and object one by one before
the process exits: with Numba and LLVM loaded that takes 0.1-0.35 s (JAX's: ~0.3 s), a
fifth of a short ``simcore run`` on the command line (benchmarks/RESULTS.md). The
operating system takes the process's memory back at once anyway. The console scripts
therefore finish what a normal exit finishes (non-daemon threads and ``threading``'s
exit callbacks, ``atexit`` handlers such as the writer's idle worker being told to go,
the standard streams flushed) and then end the process with :func:`os._exit`. Every
file a command writes is closed, fsynced and renamed before its handler returns, so
nothing is left for the teardown to finish.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Callable, NoReturn


def run_and_exit(main: Callable[[], int | None]) -> NoReturn:
    """Call ``main`` (a command's entry point returning its exit code) and exit with that
    code (or a ``SystemExit``'s, e.g. argparse's ``--help`` and usage errors) without the
    interpreter's teardown. Where CPython's exit hooks are not available (another
    interpreter), exit normally."""
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    shutdown = getattr(threading, "_shutdown", None)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or run_exitfuncs is None:
        sys.exit(code)
    shutdown()  # joins non-daemon threads, runs threading's exit callbacks (executors)
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`simcore info F | head`) or stream
            pass
    os._exit(code)
