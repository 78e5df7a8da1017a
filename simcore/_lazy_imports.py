"""Imports that ``import simcore`` and a run's first compiled call avoid or trim.

* **Numba** (with LLVM, ~0.5 s) loads with the first kernel module, not with ``import
  simcore`` (``simcore --help``, a command-line error, a script's set-up). An engine's
  record lives in its kernels' module, so whatever reads a file's parameters still loads
  it. :func:`prepare_numba_when_it_loads` does what simcore needs done before its first
  kernel is decorated (the kernel cache's locator, :mod:`simcore._numba_cache`) right
  after Numba's own import, wherever that import comes from.

Two imports that a command-line run (``simcore run harddisc``: 2.4 s, 0.5 s of it
simulating, on a 2017 server core) does not need:

* **xarray** (with pandas, ~0.6 s). ``import simcore`` registers the ``ds.simcore``
  accessor at once only if xarray is already loaded; otherwise a one-shot import hook
  registers it right after xarray's own import, wherever that import comes from (the
  user's ``import xarray``, simcore's ``open_trajectory``, a library), so
  ``xr.open_dataset(path).simcore`` works as before.
* **scipy.linalg** (~0.4 s). Numba's first compiled call in a process imports
  ``numba.np.arraymath``, which probes for BLAS with ``import scipy.linalg.cython_blas``:
  that runs the whole ``scipy.linalg`` package for one extension module of function
  pointers. :func:`preload_cython_blas` loads that module by itself under its full name
  (the probe then finds it in ``sys.modules``: the same module, the same pointers) and,
  should ``scipy.linalg`` be imported later, makes it the package's attribute as a normal
  import would.

And one thing it does not need to start: **OpenBLAS thread pools**. NumPy's and SciPy's
OpenBLAS each start a thread per core when they load, and those threads spin for ~0.1 s
waiting for work, on the core that the run's second thread and its writer process need.
The ``simcore`` command does no large linear algebra (a linear model's d × d matrices at
most), so :func:`one_blas_thread_for_the_command_line` asks for one thread before NumPy
loads (~60 ms of a default command-line run on a 2-core machine).
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Callable

_CYTHON_BLAS = "scipy.linalg.cython_blas"


def one_blas_thread_for_the_command_line() -> None:
    """Set ``OPENBLAS_NUM_THREADS=1`` when this process is the ``simcore`` command (or
    ``python -m simcore.cli``) and NumPy is not loaded yet (see the module docstring). A
    value the user set is kept; a Python program that imports simcore is left alone (its
    own linear algebra may want threads)."""
    import os

    orig = getattr(sys, "orig_argv", [])  # ``python -m simcore.cli``: argv[0] is "-m" here
    command = (os.path.basename(sys.argv[0]) == "simcore"
               or any(a == "-m" and b == "simcore.cli" for a, b in zip(orig, orig[1:])))
    if command and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def prepare_numba_when_it_loads() -> None:
    """Once Numba is imported (now, if it is loaded): put simcore's kernel-cache locator
    first in Numba's list, and preload ``scipy.linalg.cython_blas`` for Numba's BLAS
    probe (:func:`preload_cython_blas`). Both must precede simcore's first kernel
    decorator and first compiled call, which only follow an import of Numba."""
    def prepare(_module) -> None:
        import simcore._numba_cache  # noqa: F401  (installs its locator as it loads)

        preload_cython_blas()

    after_import("numba", prepare)


def register_when_xarray_loads() -> None:
    """Import :mod:`simcore.accessor` now if xarray is loaded, else right after it is."""
    def register(_module) -> None:
        import simcore.accessor  # noqa: F401  (registers ds.simcore)

    after_import("xarray", register)


def preload_cython_blas() -> None:
    """Load ``scipy.linalg.cython_blas`` without the rest of ``scipy.linalg`` (see the
    module docstring). Does nothing if either is loaded already, or if SciPy lacks the
    module or lays it out otherwise (Numba's probe then imports it as usual)."""
    if _CYTHON_BLAS in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        import importlib.machinery
        import importlib.util
        import os

        import scipy

        folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
        spec = importlib.machinery.PathFinder.find_spec(_CYTHON_BLAS, [folder])
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules[_CYTHON_BLAS] = module
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 (an optimisation only: leave the import to Numba)
        sys.modules.pop(_CYTHON_BLAS, None)
        return

    def adopt(package) -> None:
        if sys.modules.get(_CYTHON_BLAS) is module:
            package.cython_blas = module

    after_import("scipy.linalg", adopt)


def after_import(name: str, callback: Callable[[object], None]) -> None:
    """Call ``callback(module)`` once the module ``name`` (dotted or not) is imported: now
    if it is loaded, else right after its module code has run."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    sys.meta_path.insert(0, _AfterImport(name, callback))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders give ``name`` so that
    ``callback`` runs once its module has run; then removes itself (one shot)."""

    def __init__(self, name: str, callback: Callable[[object], None]):
        self.name, self.callback = name, callback

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)  # one shot; the search below must not find us again
        from importlib.util import find_spec

        spec = find_spec(name)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, callback = spec.loader.exec_module, self.callback

        def exec_then_call(module) -> None:
            exec_module(module)
            callback(module)

        spec.loader.exec_module = exec_then_call
        return spec
