"""The closed forms, re-exported from :mod:`simcore.exact` (their one home) under the name
scoremodels has always used (numpy/scipy only; importing it never imports JAX)."""

from simcore.exact import *  # noqa: F401,F403
from simcore.exact import __all__  # noqa: F401
