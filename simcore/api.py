"""The Python API that mirrors ``simcore run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from simcore.config import resolve
from simcore.driver import run_model


def run(
    model: str,
    *,
    out: str | Path,
    preset: str | None = None,
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    steps: int | None = None,
    seed: int | None = None,
    write_every: int | None = None,
    format: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    threads: int | None = None,
    quiet: bool = True,
) -> Path:
    """Run a model and write its trajectory; return the output path.

    Example::

        simcore.run("couzin", preset="torus", steps=2000, seed=1, out="t.nc",
                    overrides={"n": 500})

    Parameters are merged as preset < config (TOML) < overrides < explicit arguments and
    validated; bad input raises :class:`simcore.UserInputError` with a readable message.
    ``steps`` counts integration steps, ``write_every`` steps between frames.
    ``threads`` (Numba threads) defaults to the cores that other processes leave idle,
    measured over 0.1 s at the start (reused for 30 s); results do not depend on it.
    """
    params, settings, preset = resolve(
        model, preset=preset, config=config, overrides=overrides, steps=steps, seed=seed,
        write_every=write_every, format=format,
    )
    return run_model(model, params, settings, out, preset=preset, overwrite=overwrite,
                     resume=resume, threads=threads, quiet=quiet)
