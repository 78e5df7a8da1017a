"""Loading presets, TOML configs and ``--set key=value`` overrides into validated parameters.

Merge order (later wins): the model's defaults < preset < TOML config < overrides <
explicit arguments (``steps``, ``seed``, ``write_every``). Keys are split between the run
settings (:class:`RunSettings`) and the model's own ``Params``; both are pydantic models
with ``extra="forbid"``, so a typo is reported, never ignored.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simcore._errors import UserInputError
from simcore.models import engine_names, get_engine


class RunSettings(BaseModel):
    """How a run is driven and written, independent of the physics.

    ``steps`` is the number of integration steps (events-driven models interpret a step as
    their own unit, see the model's docstring); ``write_every`` is in steps;
    ``checkpoint_every`` is in written frames, ``checkpoint_seconds`` in wall-clock seconds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    steps: int = Field(1000, ge=0, description="number of integration steps")
    seed: int = Field(0, ge=0, lt=2**63, description="root seed of the run")
    write_every: int = Field(10, ge=1, description="steps between written frames")
    checkpoint_every: int = Field(
        50, ge=1, description="frames between checkpoints (at most ~1/100 of the run's wall "
                              "time goes to them; left at the default, a run's first "
                              "checkpoint waits until it has lasted 0.5 s)")
    # when to checkpoint, not what to compute: left out of run_parameters (exclude=True),
    # so a run may be resumed with another value
    checkpoint_seconds: float = Field(
        120.0, gt=0, allow_inf_nan=False, exclude=True,
        description="wall-clock seconds between checkpoints (also one per checkpoint_every "
                    "frames, whichever comes first)")
    format: Literal["netcdf4", "amber"] = Field(
        "netcdf4", description="netcdf4 (compressed HDF5) or amber (NETCDF3 64-bit offset)"
    )
    init_from: str | None = Field(
        None, min_length=1,
        description="start from a stored frame: FILE or FILE:FRAME (index, -1 = last) of a "
                    "simcore file of the same model (default: the model's initial state)")
    precision: Literal["float32", "float64"] = Field(
        "float32", description="floating-point type of per-atom variables in the file"
    )
    compression: Literal["zlib", "none"] = Field(
        "zlib", description="netcdf4 files: shuffle + deflate, the standard zlib filters "
                            "(1.2-2x smaller; encoded with ISA-L at ~200-450 MB/s a core), or "
                            "none (larger files, rarely faster: the disk then writes more); "
                            "the values stored are the same"
    )


RUN_KEYS = frozenset(RunSettings.model_fields)
META_KEYS = frozenset({"model", "preset"})


def validation_problems(err: ValidationError) -> list[str]:
    """One ``"field: what is wrong (got value)"`` string per problem of a pydantic error."""
    problems = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(parameters)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown parameter"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(f"{loc}: {msg}")
    return problems


def format_validation_error(err: ValidationError, what: str, valid: list[str]) -> str:
    """Turn a pydantic error into one readable paragraph."""
    problems = validation_problems(err)
    return (
        f"Invalid {what}: " + "; ".join(problems) + ". "
        f"Valid parameters are: {', '.join(sorted(valid))}."
    )


def parse_override(item: str) -> tuple[str, Any]:
    """Parse one ``KEY=VALUE``; VALUE is read as a TOML value, else as a plain string."""
    if "=" not in item:
        raise UserInputError(
            f"Cannot read the override {item!r}: write it as KEY=VALUE, e.g. --set n=500."
        )
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    if not key:
        raise UserInputError(f"Cannot read the override {item!r}: the key is empty.")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def load_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or invalid file is a ``UserInputError``
    naming ``what`` (e.g. "config file", "sweep file")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"The {what} {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"Cannot read the {what} {path}: {exc}.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"The {what} {path} is not valid TOML: {exc}.") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a flat dict (a ``[params]`` table is flattened)."""
    path = Path(path)
    data = load_toml(path)
    params = data.pop("params", {})
    if not isinstance(params, dict):
        raise UserInputError(f"In {path}, 'params' must be a table ([params]).")
    clash = set(params) & set(data)
    if clash:
        raise UserInputError(
            f"In {path}, {', '.join(sorted(clash))} is given both at the top level and in [params]."
        )
    return {**data, **params}


def _validate_params(model_name: str, values: Mapping[str, Any]):
    model = get_engine(model_name)
    try:
        return model.Params(**values)
    except ValidationError as err:
        valid = list(model.Params.model_fields) + sorted(RUN_KEYS)
        raise UserInputError(
            format_validation_error(err, f"parameters for model '{model_name}'", valid)
        ) from None


def presets(model_name: str) -> dict[str, Any]:
    """Return the model's presets as validated ``Params`` objects, keyed by preset name."""
    model = _model_or_error(model_name)
    out = {}
    for name, spec in model.presets.items():
        values = {k: v for k, v in spec.items() if k not in RUN_KEYS}
        out[name] = _validate_params(model_name, values)
    return out


def _model_or_error(model_name: str):
    try:
        return get_engine(model_name)
    except KeyError:
        raise UserInputError(
            f"Unknown model {model_name!r}. Choose one of: {', '.join(engine_names())}."
        ) from None


def resolve(
    model_name: str,
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | list[str] | None = None,
    steps: int | None = None,
    seed: int | None = None,
    write_every: int | None = None,
    format: str | None = None,
) -> tuple[Any, RunSettings, str | None]:
    """Merge defaults, preset, config file and overrides into validated parameters.

    Returns ``(params, settings, preset_name)``. Raises :class:`UserInputError` with one
    paragraph listing every problem.
    """
    model = _model_or_error(model_name)
    merged: dict[str, Any] = {}
    file_values: dict[str, Any] = {}
    if config is not None:
        file_values = read_toml(config)
        file_model = file_values.pop("model", model_name)
        if file_model != model_name:
            raise UserInputError(
                f"The config file {config} is for model {file_model!r}, not {model_name!r}."
            )
        if preset is None:
            preset = file_values.pop("preset", None)
        else:
            file_values.pop("preset", None)
    if preset is None:
        preset = model.default_preset
    if preset is not None:
        if preset not in model.presets:
            raise UserInputError(
                f"Unknown preset {preset!r} for model '{model_name}'. "
                f"Choose one of: {', '.join(model.presets)} (see `simcore presets {model_name}`)."
            )
        merged.update(model.presets[preset])
    merged.update(file_values)
    if overrides:
        items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
        for key, value in items:
            if not isinstance(key, str):
                raise UserInputError(f"Parameter names in overrides must be strings (got "
                                     f"{key!r}: {value!r}).")
            if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
                value = value.item()  # numpy scalars: np.int64 -> int, np.bool_ -> bool
            if key in META_KEYS:
                raise UserInputError(
                    f"'{key}' cannot be overridden with --set; use the {key} argument instead."
                )
            merged[key] = value
    for key, value in (("steps", steps), ("seed", seed), ("write_every", write_every), ("format", format)):
        if value is not None:
            merged[key] = value
    run_values = {k: v for k, v in merged.items() if k in RUN_KEYS}
    model_values = {k: v for k, v in merged.items() if k not in RUN_KEYS}
    given = set(merged)  # keys set by a preset, the config, overrides or arguments
    run_values.setdefault("steps", model.default_steps)
    run_values.setdefault("write_every", model.default_write_every)
    problems = []
    params = settings = None
    try:
        params = _validate_params(model_name, model_values)
    except UserInputError as err:
        problems.append(str(err))
    try:
        settings = RunSettings(**run_values)
    except ValidationError as err:
        problems.append(format_validation_error(err, "run settings", sorted(RUN_KEYS)))
    if problems:
        raise UserInputError(" ".join(problems))
    if model.resolve_run is not None:  # e.g. a run length set by a model time
        params, settings = model.resolve_run(params, settings, given)
    return params, settings, preset


def run_parameters_json(model_name: str, params, settings: RunSettings, preset: str | None) -> str:
    """The canonical JSON stored in a trajectory's ``run_parameters`` attribute.

    Flat: ``model``, ``preset``, every model parameter and every run setting (seed
    included); model parameter names never collide with run-setting names.
    """
    record = {"model": model_name, "preset": preset}
    record.update(params.model_dump(mode="json"))
    # unset optional settings (init_from) are left out, so older files' JSON is unchanged
    record.update(settings.model_dump(mode="json", exclude_none=True))
    return json.dumps(record, sort_keys=True)


def split_run_parameters(text: str, source: str | None = None
                         ) -> tuple[str, Any, RunSettings, str | None]:
    """Inverse of :func:`run_parameters_json`: ``(model, params, settings, preset)``.

    ``source`` names the file in error messages. Text that is not simcore JSON, an
    unknown model or values that fail validation raise :class:`UserInputError`.
    """
    where = f"The run_parameters attribute of {source}" if source else \
        "The file's run_parameters attribute"
    try:
        record = json.loads(text)
        model_name = record.pop("model")
        preset = record.pop("preset", None)
    except (ValueError, KeyError, AttributeError, TypeError):
        raise UserInputError(
            f"{where} is not simcore JSON (a JSON object with a 'model' key), so the file "
            "cannot be interpreted; it was not written by simcore or it was edited. Rerun "
            "the simulation to get a valid file.") from None
    if not isinstance(model_name, str):
        raise UserInputError(f"{where} names no valid model (got {model_name!r}); rerun the "
                             "simulation to get a valid file.")
    try:
        model = get_engine(model_name)
    except KeyError:
        raise UserInputError(
            f"{where} names the model {model_name!r}, which this version of simcore does not "
            f"know (it knows {', '.join(engine_names())}); the file was edited or written by "
            "another simcore version.") from None
    problems = []
    params = settings = None
    try:
        params = model.Params(**{k: v for k, v in record.items() if k not in RUN_KEYS})
    except ValidationError as err:
        problems += validation_problems(err)
    except TypeError as err:  # e.g. a non-string key
        problems.append(str(err))
    try:
        settings = RunSettings(**{k: v for k, v in record.items() if k in RUN_KEYS})
    except ValidationError as err:
        problems += validation_problems(err)
    if problems:
        raise UserInputError(
            f"{where} holds values that this version of simcore does not accept, so the file "
            f"cannot be interpreted ({'; '.join(problems)}). The file was edited, damaged or "
            "written by another simcore version; rerun the simulation (or use the simcore "
            "version that wrote it).")
    return model_name, params, settings, preset
