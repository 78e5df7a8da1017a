"""``import simcore`` trims what a command-line run imports (simcore._lazy_imports)."""

import subprocess
import sys

import pytest


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
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["5.0"]
