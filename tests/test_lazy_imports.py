"""``import simcore`` trims what a command-line run imports (simcore._lazy_imports)."""

import os
import subprocess
import sys

import pytest


def _python(*args, env=None):
    """Run ``python *args`` in a fresh interpreter; return the CompletedProcess."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.parametrize("scipy_linalg_first", [False, True])
def test_numba_blas_without_scipy_linalg(scipy_linalg_first):
    """Numba's BLAS probe finds ``scipy.linalg.cython_blas`` without the rest of
    ``scipy.linalg`` (0.4 s) being imported; BLAS calls from compiled code give the right
    values; a later ``import scipy.linalg`` is whole, with ``cython_blas`` its attribute
    (the very module Numba uses). Imported first, scipy.linalg is left alone."""
    script = ("import sys\n"
              + ("import scipy.linalg\n" if scipy_linalg_first else "")
              + "import numba, numpy as np\n"
              "import simcore\n"
              "@numba.njit\n"
              "def product(a, b):\n"
              "    return a @ b\n"
              "a = np.arange(6.0).reshape(2, 3); b = np.arange(12.0).reshape(3, 4)\n"
              "assert np.array_equal(product(a, b), a @ b)\n"
              + ("" if scipy_linalg_first else "assert 'scipy.linalg' not in sys.modules\n")
              + "import scipy.linalg\n"
              "from scipy.linalg import cython_blas\n"
              "assert scipy.linalg.cython_blas is cython_blas is sys.modules[cython_blas.__name__]\n"
              "assert np.allclose(scipy.linalg.solve(np.diag([2.0, 4.0]), np.ones(2)), [0.5, 0.25])\n"
              "print(scipy.linalg.blas.ddot(np.arange(3.0), np.arange(3.0)))\n")
    proc = _python("-c", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["5.0"]


@pytest.mark.parametrize("argv0, preset, expected", [
    ("/somewhere/bin/simcore", None, "1"),  # the command, NumPy not loaded yet
    ("/somewhere/bin/simcore", "3", "3"),  # the user's own setting wins
    ("my_analysis.py", None, None),  # a Python program importing simcore: left alone
])
def test_one_blas_thread_for_the_command_line(argv0, preset, expected):
    """The ``simcore`` command asks OpenBLAS for one thread before NumPy loads (its pools
    spin ~0.1 s on the core a run needs); other programs and explicit settings keep theirs.
    The thread count OpenBLAS took is read back through threadpoolctl where present."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    script = (f"import os, sys\nsys.argv[0] = {argv0!r}\nimport simcore\n"
              "print(os.environ.get('OPENBLAS_NUM_THREADS'))\n"
              "try:\n"
              "    from threadpoolctl import threadpool_info\n"
              "except ImportError:\n"
              "    print('n/a')\n"
              "else:\n"
              "    print(sorted({p['num_threads'] for p in threadpool_info()\n"
              "                  if p['internal_api'] == 'openblas'}))\n")
    proc = _python("-c", script, env=env)
    assert proc.returncode == 0, proc.stderr
    value, pools = proc.stdout.split("\n")[:2]
    assert value == str(expected)
    if expected == "1" and pools != "n/a":  # (OpenBLAS caps other values at the cores)
        assert pools == "[1]"


def test_one_blas_thread_for_python_m_simcore_cli(tmp_path):
    """``python -m simcore.cli`` is the command too (argv[0] is "-m" while the package
    loads): its run starts with one OpenBLAS thread."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    probe = tmp_path / "sitecustomize.py"  # reports the setting when the interpreter exits
    probe.write_text("import atexit, os, sys\natexit.register(lambda: sys.stderr.write("
                     "'BLAS=' + str(os.environ.get('OPENBLAS_NUM_THREADS')) + '\\n'))\n")
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = _python("-m", "simcore.cli", "--help", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "BLAS=1" in proc.stderr


@pytest.mark.parametrize("numba_first", [False, True])
def test_numba_loads_with_the_first_kernel_module_and_gets_the_kernel_cache(numba_first):
    """``import simcore`` leaves Numba unloaded; the first kernel module's import loads
    it, and simcore's kernel-cache locator is first in Numba's list before that module's
    decorators run (its kernels' caches use it). Numba imported before simcore: the
    locator is installed by ``import simcore`` itself."""
    script = ("import sys\n"
              + ("import numba\n" if numba_first else "")
              + "import simcore\n"
              + ("" if numba_first else "assert 'numba' not in sys.modules\n")
              + "from simcore._numba_cache import KernelSourcesLocator, _CacheImpl\n"
              "assert _CacheImpl._locator_classes[0] is KernelSourcesLocator\n"
              "import simcore.rng\n"
              "assert isinstance(simcore.rng.mix64._cache._impl.locator, KernelSourcesLocator)\n"
              "print(sum(c is KernelSourcesLocator for c in _CacheImpl._locator_classes))\n")
    proc = _python("-c", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1"]
