"""Numba's on-disk cache of simcore's kernels follows every kernel source file, not only
the kernel's own (simcore/_numba_cache.py)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import simcore

# One noise step of the linear model: `_chunks_serial` (linear.py) inlines rng.py's hash.
_PROBE = """
import json, numpy as np
from simcore.models import linear
x = np.zeros((3, 2)); y = np.zeros_like(x); z = np.zeros_like(x)
linear._chunks_serial(x, y, z, np.eye(2), np.eye(2), np.uint64(7), 0, 1, 1, np.zeros((1, 3, 2)))
stats = linear._chunks_serial.stats
print(json.dumps({"x": x.ravel().tolist(), "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def _probe(root: Path, cache_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=root, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_callee_changed_in_another_file_recompiles_the_cached_caller(tmp_path):
    package = Path(simcore.__file__).parent
    copy = tmp_path / "src"
    shutil.copytree(package, copy / "simcore", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "numba-cache"

    first = _probe(copy, cache)
    again = _probe(copy, cache)
    assert (first["misses"], again["misses"], again["hits"]) == (1, 0, 1)  # cached when unchanged
    assert again["x"] == first["x"]

    rng_py = copy / "simcore" / "rng.py"
    text = rng_py.read_text()
    finaliser = "return z ^ (z >> uint64(31))"
    assert text.count(finaliser) == 1
    rng_py.write_text(text.replace(finaliser, "return z ^ (z >> uint64(29))"))

    changed = _probe(copy, cache)
    assert (changed["misses"], changed["hits"]) == (1, 0)  # linear.py itself is unchanged
    assert changed["x"] != first["x"]  # the new hash, not the cached old one


def test_a_simcore_function_numba_cannot_cache_gets_numbas_warning():
    """Numba warns where it cannot cache a function (it reads a ctypes pointer, as
    ``numba.get_num_threads()`` compiled does) at the locator's source file; simcore's
    locator must answer that, not raise."""
    import warnings

    import numba
    from numba.core.errors import NumbaWarning

    from simcore._numba_cache import KernelSourcesLocator

    source = Path(simcore.__file__).parent / "_team.py"  # any file of the package
    namespace = {"numba": numba, "__file__": str(source)}
    exec(compile("def threads():\n    return numba.get_num_threads()\n", str(source), "exec"),
         namespace)
    locator = KernelSourcesLocator.from_function(namespace["threads"], str(source))
    assert locator is not None and locator._py_file == str(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert numba.njit(cache=True)(namespace["threads"])() == numba.get_num_threads()
    assert any(issubclass(w.category, NumbaWarning) and "Cannot cache" in str(w.message)
               for w in caught)
