"""On/off switches read from the environment (``SIMCORE_SKIP_MEMORY_CHECK=1`` ...)."""

from __future__ import annotations

import os

ON_WORDS = ("1", "true", "yes")


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is switched on: ``1``, ``true`` or ``yes``
    (any case, surrounding spaces ignored). Unset, empty or any other value is off."""
    return os.environ.get(name, "").strip().lower() in ON_WORDS
