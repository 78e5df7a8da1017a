"""simcore: Numba-JIT simulation engines for entropy in active and nonequilibrium matter.

The public API is small; everything else lives in private or per-concept modules:

* :func:`run` — run a model (same as ``simcore run``) and return the output path;
* :func:`presets` — a model's presets as validated parameter objects;
* :func:`open_trajectory` — open a trajectory lazily as an xarray Dataset
  (with the ``ds.simcore`` accessor);
* :func:`schooling_indices` — order parameters, seven entropies and the OSI;
* :func:`sweep` — run a parameter sweep (same as ``simcore sweep``), resumable;
* :func:`open_sweep` — a finished sweep as one lazy Dataset, parameters as dimensions.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING  # noqa: E402

from simcore._cpu import start_probe  # noqa: E402
from simcore._lazy_imports import one_blas_thread_for_the_command_line  # noqa: E402

one_blas_thread_for_the_command_line()  # before anything below loads NumPy
start_probe()  # a first run's thread choice samples the others' load during the imports

from simcore._lazy_imports import prepare_numba_when_it_loads  # noqa: E402

# before any kernel module runs its decorators (a callee's change recompiles its callers),
# and without importing Numba (0.5 s) until one of them loads
prepare_numba_when_it_loads()

from simcore.api import run  # noqa: E402
from simcore.config import presets  # noqa: E402
from simcore.io.trajectory import open_trajectory  # noqa: E402
from simcore._errors import UnstableRunError, UserInputError  # noqa: E402
from simcore.sweep import open_sweep, run_sweep as sweep  # noqa: E402
from simcore._lazy_imports import register_when_xarray_loads  # noqa: E402

register_when_xarray_loads()  # ds.simcore, without importing xarray here (0.6 s)

if TYPE_CHECKING:
    import xarray as xr


def schooling_indices(*args, **kwargs) -> "xr.Dataset":
    """Schooling order parameters and entropies of arrays ``(positions, velocities, ...)``
    (:func:`simcore.analysis.schooling.schooling_indices`), or of a whole trajectory
    given as its Dataset (``simcore.schooling_indices(simcore.open_trajectory(path))``,
    read frame by frame: :func:`simcore.analysis.schooling.schooling_indices_from_dataset`)."""
    if len(args) == 1 and "velocities" not in kwargs and hasattr(args[0], "data_vars"):
        from simcore.analysis.schooling import schooling_indices_from_dataset

        return schooling_indices_from_dataset(args[0], **kwargs)
    from simcore.analysis.schooling import schooling_indices as _impl

    return _impl(*args, **kwargs)


__all__ = ["run", "presets", "open_trajectory", "schooling_indices", "sweep", "open_sweep",
           "UserInputError", "UnstableRunError", "__version__"]
