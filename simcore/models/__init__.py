"""The engine registry: names -> :class:`simcore.engine.Engine` records.

The built-in engines live in this package (one module, or package, per engine, each with
an ``ENGINE`` record). Other packages add engines without touching simcore by declaring
an entry point in the ``simcore.engines`` group whose value is the record::

    [project.entry-points."simcore.engines"]
    vicsek = "my_package.vicsek:ENGINE"

Records are imported on first use; :func:`engine_names` imports none.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from simcore.engine import Engine, resolve_reference

ENTRY_POINT_GROUP = "simcore.engines"

_BUILTIN = {
    "couzin": "simcore.models.couzin:ENGINE",
    "abp": "simcore.models.active:ENGINE",
    "linear": "simcore.models.linear:ENGINE",
    "harddisc": "simcore.models.harddisc:ENGINE",
}


def box_corner(*xyz) -> str:
    """A box corner as a global attribute (``simcore_box_lo``/``_hi``): three floats as
    text (exact repr; a text attribute compares like the other attributes)."""
    return " ".join(repr(float(v)) for v in xyz)


@cache
def _references() -> dict[str, str]:
    refs = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        refs.setdefault(ep.name, ep.value)  # a plug-in cannot replace a built-in engine
    return refs


def engine_names() -> list[str]:
    """Names accepted by ``simcore run MODEL``: the built-in engines, then the plug-ins."""
    return list(_references())


@cache
def get_engine(name: str) -> Engine:
    """The engine record registered as ``name`` (KeyError if unknown; TypeError if the
    registered object is not an :class:`Engine` of that name)."""
    ref = _references()[name]
    record = resolve_reference(ref)
    if not isinstance(record, Engine) or record.name != name:
        raise TypeError(f"The engine {name!r} ({ref}) must be a simcore.engine.Engine record "
                        f"named {name!r} (got {type(record).__name__} "
                        f"{getattr(record, 'name', '')!r}).")
    return record


# the names used before the engine record (kept for scripts and notebooks)
model_names = engine_names
get_model = get_engine
