"""Numba's on-disk cache of simcore's kernels, keyed on all of simcore's compiled sources.

Numba stamps a cached function with its own file's contents only, so a kernel keeps the
machine code of callees (and module constants) from other files that it was compiled
with: after a ``git pull`` that changes only ``rng.py``, every kernel that inlines the
noise would silently run the old noise. :func:`install` puts a locator first in Numba's
list that, for functions defined under this package, adds a digest of every simcore
source file that defines compiled code to the stamp, so a change in any of them recompiles
them all (files that only call the kernels, such as the driver, do not count)
(a few minutes once in a developer's checkout; nothing for an installed release, whose
files change only with its version). Where it files the cache is Numba's usual choice
(``NUMBA_CACHE_DIR``, else the package's ``__pycache__``, else the user-wide cache).
"""

from __future__ import annotations

import functools
import hashlib
import os

from numba.core import caching

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# decorators of compiled code; a file holding none of them adds nothing to a kernel
_COMPILED_MARKERS = (b"@njit", b"@jit", b"@intrinsic", b"@vectorize", b"@guvectorize",
                     b"@overload")
_CacheImpl = getattr(caching, "CacheImpl", None) or caching._CacheImpl


@functools.lru_cache(maxsize=1)
def kernel_sources_digest() -> str:
    """SHA-256 (hex) over the paths and contents of simcore's ``.py`` files that define
    compiled code (:data:`_COMPILED_MARKERS`), read once per process."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(_PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                text = fh.read()
            if any(marker in text for marker in _COMPILED_MARKERS):
                digest.update(os.path.relpath(path, _PACKAGE_DIR).encode() + b"\0")
                digest.update(hashlib.sha256(text).digest())
    return digest.hexdigest()


class KernelSourcesLocator(caching._CacheLocator):
    """Numba's own locator for a simcore function, with :func:`kernel_sources_digest` in
    its source stamp."""

    _fallbacks = tuple(_CacheImpl._locator_classes)  # Numba's list before install()

    def __init__(self, inner):
        self._inner = inner

    @property
    def _py_file(self):  # where Numba points its "cannot cache" warnings
        return self._inner._py_file

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return (self._inner.get_source_stamp(), kernel_sources_digest())

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(_PACKAGE_DIR + os.sep):
            return None  # not ours: Numba's own locators take it
        for fallback in cls._fallbacks:
            inner = fallback.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner)
        return None


def install() -> None:
    """Put :class:`KernelSourcesLocator` first in Numba's locator list (idempotent). Runs
    when this module loads, which ``import simcore`` arranges for right after Numba's own
    import (:func:`simcore._lazy_imports.prepare_numba_when_it_loads`), before any simcore
    kernel is decorated."""
    if KernelSourcesLocator not in _CacheImpl._locator_classes:
        _CacheImpl._locator_classes.insert(0, KernelSourcesLocator)


# on import: this module's own import of Numba (above) may be the one that triggers
# simcore._lazy_imports' hook, which then finds this module half-loaded
install()
