"""The engine record: everything the rest of simcore may ask about a simulation engine.

An engine module (``simcore/models/<name>.py`` or a third-party package) owns its physics
and describes itself with one :class:`Engine` value, conventionally named ``ENGINE``.
The driver, the configuration, the file store, the CLI, sweeps, analyses, figures and
``scoremodels`` read only this record; none of them names an engine. The registry
(:mod:`simcore.models`) maps names to records, including engines that other packages
register through the ``simcore.engines`` entry-point group (see docs/architecture.md,
"How to add an engine").

Heavy parts (analyses, figures, animations) are referenced lazily as ``"module:function"``
strings so that listing engines imports no analysis or plotting code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

State = dict[str, np.ndarray]


def _no_warnings(params) -> list[str]:
    return []


@dataclass(frozen=True)
class Option:
    """An option of an engine's default analysis that the CLI exposes (``simcore analyze
    --NAME``): ``choices`` (or None for free text), its ``default`` and a ``help`` line."""

    name: str
    help: str
    choices: tuple[str, ...] | None = None
    default: Any = None


@dataclass(frozen=True, kw_only=True)
class Engine:
    """One simulation engine, as the rest of simcore sees it.

    Physics (called by the driver; all arrays float64 unless the engine says otherwise):

    ``init_state(params, seed) -> State``
        the initial state, a dict of arrays;
    ``advance(state, params, key, step, n_steps)``
        advance ``state`` in place by ``n_steps`` steps; ``step`` is the global index of the
        first step and ``key`` the counter-based RNG key (:mod:`simcore.rng`), so a run cut
        anywhere continues with the same bits;
    ``advance_frames(state, params, key, step, n_steps, n_chunks) -> State`` (optional)
        ``n_chunks`` calls of ``advance`` (``n_steps`` each) in one: returns the states
        after each chunk stacked (each array with a leading chunk axis, possibly fewer
        chunks than asked; they need live only until the next call), which ``frame`` must
        accept (numpy broadcasting); raises ``UnstableRunError`` with ``good_states``, the
        stacked states of the chunks before the unstable one. The driver then makes many
        frames per call, amortising its per-frame Python;
    ``frame(state, params) -> dict``
        the per-frame variables: ``coordinates`` (N, 3), ``velocities`` (N, 3) when
        ``has_velocities``, ``cell_lengths`` (3,) and the extras of ``extra_variables``;
    ``extra_variables(params) -> {name: (dims after 'frame', units, long_name[, sizes])}``
        dims from ``atom``, ``spatial`` (3) and engine-specific ones whose lengths
        ``sizes`` gives (e.g. the linear model's ``{"component": d}``);
    ``time_per_step(params) -> float``
        model time units per step;
    ``state_from_frame(variables, params) -> State`` (optional)
        the inverse of ``frame`` for ``init_from`` and for analyses that need the state
        (e.g. the forces of a stored frame);
    ``geometry(params) -> dict`` (optional)
        global attributes describing the container (``simcore_boundary``,
        ``simcore_box_lo``/``_hi``);
    ``resolve_run(params, settings, given) -> (params, settings)`` (optional)
        engines whose run length is set by a model parameter (hard discs: ``t_end``).
    """

    name: str
    ndim: int
    Params: type
    presets: Mapping[str, Mapping[str, Any]]
    init_state: Callable[..., State]
    advance: Callable[..., None]
    frame: Callable[..., dict]
    extra_variables: Callable[..., dict]
    time_per_step: Callable[..., float]
    description: str = ""
    advance_frames: Callable[..., State] | None = None
    preset_docs: Mapping[str, str] = field(default_factory=dict)
    default_preset: str | None = None
    default_steps: int = 1000
    default_write_every: int = 10
    warnings: Callable[..., list[str]] = _no_warnings
    state_from_frame: Callable[..., State] | None = None
    geometry: Callable[..., dict] | None = None
    resolve_run: Callable[..., tuple] | None = None
    #: model parameters that set the run length (``--extend`` may raise them)
    run_length_params: tuple[str, ...] = ()
    #: False for overdamped/OU models: the file stores their drift, not ``velocities``
    has_velocities: bool = True
    #: what one driver step is, for progress bars and messages ("step"; the hard discs'
    #: step is one frame interval of event-driven time)
    step_unit: str = "step"
    #: False for serial kernels: the driver then skips choosing a thread count
    threaded: bool = True
    #: ``cuts_anywhere(params) -> bool``: whether a frame interval advanced in several
    #: ``advance`` calls gives the bits of one call (None: always). Where not, the driver
    #: advances every interval in one call (no progress, load following or stop within
    #: it): e.g. Couzin in open space plans its cells anew at each call, and the cell
    #: order is the order of each agent's neighbour sums
    cuts_anywhere: Callable[..., bool] | None = None
    #: ``kernel_threads(params, n_steps, threads=None) -> int``: the threads ``advance``
    #: computes on, ``n_steps`` steps at a time, with ``threads`` available (default:
    #: Numba's current thread count); None: one. The driver writes the NetCDF file beside
    #: the run in a worker process only while this leaves one of the process's cores idle,
    #: and after the last step otherwise. Such engines take ``parallel=`` (bool) in
    #: ``advance`` and ``advance_frames``: the driver fixes the kernel's path for the run
    #: (``kernel_threads > 1`` with the most threads the run may use) and may change Numba's
    #: thread count between calls (:class:`simcore._cpu.LoadFollower`); the threaded path
    #: must give the serial bits at any thread count, one included
    kernel_threads: Callable[..., int] | None = None
    #: ``run_bytes(params) -> (bytes of state, work arrays and one frame, floats per
    #: particle in a frame)`` for the memory check before a run; None: not checked
    run_bytes: Callable[..., tuple[int, int]] | None = None
    #: ``analysis_bytes(n_atoms, n_frames, params) -> bytes`` of the default analysis
    analysis_bytes: Callable[..., int] | None = None
    #: lazy references ``"module:function"``: the default analysis ``f(ds, **options) ->
    #: xr.Dataset``, its figure ``f(ds, **options) -> Figure`` and animation
    #: ``f(ds, out, progress=True) -> None``
    analysis: str | None = None
    figure: str | None = None
    animation: str | None = None
    analysis_options: tuple[Option, ...] = ()
    #: how ``scoremodels`` reads the engine's files (``"module:function"``, see
    #: scoremodels/adapters.py); None: scoremodels does not take them
    score_adapter: str | None = None
    #: overrides (model parameters and run settings) for a run of a few seconds that still
    #: exercises the engine's parallel path: the contract test (tests/test_contract.py)
    #: runs every registered engine with them
    quick_run: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # read-only views: a record is shared by every caller
        object.__setattr__(self, "presets", MappingProxyType(dict(self.presets)))
        object.__setattr__(self, "preset_docs", MappingProxyType(dict(self.preset_docs)))
        object.__setattr__(self, "quick_run", MappingProxyType(dict(self.quick_run)))

    def load(self, what: str) -> Callable | None:
        """The function behind the lazy reference ``what`` (``"analysis"``, ``"figure"`` or
        ``"animation"``), imported now; None when the engine has none."""
        ref = getattr(self, what)
        return None if ref is None else resolve_reference(ref)

    def option_names(self) -> list[str]:
        """Names of the options of the default analysis (``analysis_options``)."""
        return [o.name for o in self.analysis_options]


def resolve_reference(ref: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
