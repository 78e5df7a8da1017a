"""Register the ``ds.simcore`` accessor when xarray is imported, not when simcore is.

xarray (with pandas) takes ~0.6 s to import on a 2017 server core, a fifth of a default
command-line run (``simcore run harddisc``: 3.0 s, 0.5 s of it simulating), which never
uses it. ``import simcore`` therefore registers the accessor at once only if xarray is
already loaded; otherwise a one-shot import hook registers it right after xarray's own
import, wherever that import comes from (the user's ``import xarray``, simcore's
``open_trajectory``, a library), so ``xr.open_dataset(path).simcore`` works as before.
"""

from __future__ import annotations

import importlib.abc
import sys


def register_when_xarray_loads() -> None:
    """Import :mod:`simcore.accessor` now if xarray is loaded, else right after it is."""
    if "xarray" in sys.modules:
        import simcore.accessor  # noqa: F401
        return
    if not any(isinstance(finder, _XarrayHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _XarrayHook())


class _XarrayHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders give xarray so that the
    accessor is registered once xarray's module has run; then removes itself."""

    def find_spec(self, name, path, target=None):
        if name != "xarray":
            return None
        sys.meta_path.remove(self)  # one shot; the search below must not find us again
        from importlib.util import find_spec

        spec = find_spec(name)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module) -> None:
            exec_module(module)
            import simcore.accessor  # noqa: F401  (registers ds.simcore)

        spec.loader.exec_module = exec_then_register
        return spec
