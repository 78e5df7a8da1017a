"""scoremodels: score networks (JAX/Flax) and entropy production rates from simcore
trajectories. Not implemented yet: the estimators arrive with their own issue; until
then this package only reserves the import name."""
