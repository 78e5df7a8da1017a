"""scoremodels: score networks (JAX/Flax) and entropy production rates from simcore
trajectories.

Modules (imported on demand, so ``import scoremodels`` does not import JAX):
``data`` (chunked NetCDF reading, cell-list neighbourhoods, batches), ``nets`` (flax.nnx
local transformer and MLP), ``losses`` (DSM, Hyvärinen, Fokker–Planck residual),
``train`` (``scoremodels train``), ``epr`` (``scoremodels epr``), ``exact`` (closed
forms, NumPy only). See docs/scoremodels.md."""
