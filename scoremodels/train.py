"""Training score networks on simcore trajectories (``scoremodels train``).

A run directory holds ``run.json`` (the resolved configuration: data, network,
objective, optimiser), ``checkpoints/`` (orbax: parameters, EMA parameters, optimiser
state, step), ``metrics.csv`` (step, wall time, learning rate, training loss, validation
loss of the raw and the EMA parameters) and ``loss.png``.

Reproducibility: the batch of step t is a pure function of (seed, t) (see
:class:`scoremodels.data.BatchStream`) and the loss noise key is fold_in(seed, t), so
training interrupted and resumed from a checkpoint ends with the same parameters as an
uninterrupted run (bit-identical on the same devices).

Data parallel: batches are sharded along their first axis over all local JAX devices
(``jax.sharding`` mesh ("data",)); parameters and optimiser state are replicated.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simcore._errors import UserInputError
from simcore._progress import progress
from scoremodels import data as sdata
from scoremodels import network
from scoremodels.rundir import (RUN_FILE, _atomic_text, _damaged_record, _loss_figure, _manager,
                                _optimizer, _read_metrics, _write_metrics)



@dataclass
class TrainConfig:
    """Training settings (all overridable from a TOML file or flags).

    Units: ``sigmas`` in state units (model lengths, radians, g units); ``cutoff`` in
    model lengths; ``memory_budget_mb`` in MiB; ``lr`` per step.
    """

    size: str = "auto"                 # "tiny" | "small" | "anchor" | "mlp" | "pinned" | "auto"
    depth: int | None = None
    width: int | None = None
    heads: int | None = None
    neighbours: int | None = None
    cutoff: float | None = None        # None: K nearest neighbours at any distance
    absolute_position: bool | None = None  # None: on for a trapped system
    sector: str = "auto"               # "full" | "propulsion" | "auto"
    objective: str = "auto"            # "dsm" | "dsm_g" | "hyvarinen" | "flow" | "auto"
    flow_step: int = 1                 # flow: frames between the differenced frames
    flow_scheme: str = "central"       # flow: "central" | "backward" (scoremodels.flow)
    sigmas: list = field(default_factory=lambda: [0.05])
    div_mode: str = "exact"
    fpe_weight: float = 0.0
    rotate: bool = False
    augment: str = "none"              # "none" | "square" (the 8 symmetries of the square)
    optimizer: str = "adamw"           # "adamw" | "radam"
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.0
    clip: float = 1.0
    ema: float = 0.999
    steps: int = 2000
    batch_size: int = 256
    particles_per_frame: int | None = None
    burn_in: float = 0.2
    val_fraction: float = 0.1
    n_blocks: int = 10
    stride: int = 1
    val_samples: int = 2048
    val_every: int = 200
    checkpoint_every: int = 500
    memory_budget_mb: float = 512.0
    seed: int = 0

    def __post_init__(self):
        from scoremodels._validate import check_train_config

        check_train_config(self)  # strict types, finite values (--lr nan is refused)

    @classmethod
    def from_toml(cls, path) -> dict:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise UserInputError(f"Cannot read the config {path}: {exc.strerror}.") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserInputError(f"The config {path} is not valid TOML: {exc}.") from None
        raw = raw.get("train", raw)
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(raw) - known)
        if bad:
            raise UserInputError(f"Unknown training setting(s) {bad} in {path}; known: "
                                 f"{', '.join(sorted(known))}.")
        return raw


def resolve(tset: sdata.TrajectorySet, cfg: TrainConfig, stream_sample=None):
    """Network config, score dims and objective for this data and settings."""
    from scoremodels.losses import Objective
    from scoremodels.nets import SIZES, NetConfig

    a = tset.adapter
    sector = a.default_sector() if cfg.sector == "auto" else cfg.sector
    if sector == "full" and a.x_dims and np.any(np.diag(a.diffusion)[list(a.x_dims)] == 0):
        raise UserInputError("The positions of this system are noiseless (D_t = 0): the "
                             "all-variables EPR is infinite (hypoelliptic). Train the "
                             "propulsion sector instead (--sector propulsion).")
    dims = a.sector_dims(sector)
    size = cfg.size
    if size == "auto":
        size = "small" if a.local and a.interacting else "mlp"
        size = "pinned" if a.layout == network.LAYOUT else size
    if a.layout == network.LAYOUT and size != "pinned":
        raise UserInputError("A harmonic AOUP network file is learned with the pinned g-score "
                             "network only (--size pinned, the default for it).")
    if size == "pinned":
        return _resolve_pinned(a, cfg, dims, sector, stream_sample)
    if size != "mlp" and not a.local:
        raise UserInputError("The linear model has no neighbourhoods; use --size mlp.")
    base = dict(depth=3, width=64, heads=1, neighbours=1) if size == "mlp" else dict(SIZES[size])
    for key in ("depth", "width", "heads", "neighbours"):
        if getattr(cfg, key) is not None:
            base[key] = getattr(cfg, key)
    absolute = cfg.absolute_position
    if absolute is None:
        absolute = a.kappa > 0
    net = NetConfig(**{k: v for k, v in base.items() if k in NetConfig.__dataclass_fields__},
                    kind="mlp" if size == "mlp" else "transformer", cutoff=cfg.cutoff,
                    state_dim=a.state_dim, score_dims=tuple(dims), x_dims=a.x_dims,
                    prop_kind=a.prop_kind, absolute_position=bool(absolute),
                    propulsion_prior=a.prop_kind == "vector", seed=cfg.seed)
    if stream_sample is not None:
        _set_scales(net, stream_sample)
    kind = cfg.objective
    if kind == "auto":
        kind = "hyvarinen" if net.kind == "mlp" else "dsm"
    if cfg.fpe_weight > 0:
        if net.kind != "mlp" or a.drift_divergence(dims) is None or sector != "full":
            raise UserInputError("The Fokker–Planck residual needs the whole system in one "
                                 "sample (the MLP on a linear-SDE copy or a non-interacting "
                                 "particle, sector full); it is not available here.")
    obj = Objective(kind=kind, sigmas=[float(s) for s in cfg.sigmas], div_mode=cfg.div_mode,
                    fpe_weight=cfg.fpe_weight, rotate=cfg.rotate,
                    augment=cfg.augment)
    if any(s <= 0 for s in obj.sigmas):
        raise UserInputError("Noise levels (sigmas) must be positive.")
    return net, dims, sector, obj


def _resolve_pinned(a, cfg, dims, sector, stream_sample):
    """The pinned g-score route (:class:`scoremodels.nets.PinnedScore`): AOUP files,
    propulsion sector, Hyvärinen in g by default (or g-only DSM, ``dsm_g``)."""
    if a.prop_kind != "vector" or sector != "propulsion":
        raise UserInputError("The pinned g-score network (--size pinned) is for AOUP files "
                             "(vector propulsion g) and the propulsion sector only.")
    p = a.params
    if a.layout == network.LAYOUT:
        return _resolve_network(a, cfg, dims, sector, stream_sample)
    pot = {"kind": p.get("potential", "none"), "k": float(p.get("k", 1.0)),
           "beta": float(p.get("beta", 7.5)), "contact": 2.0 * float(p.get("radius", 1.0)),
           "mu": float(p.get("mu", 1.0)),
           "cutoff": float(p.get("cutoff") or 4.0 * float(p.get("radius", 1.0)))}
    if pot["kind"] not in ("soft_harmonic", "none"):
        raise UserInputError("The pinned g-score network knows the soft-disc potential "
                             "(soft_harmonic) and free/trapped particles only, not "
                             f"{pot['kind']!r}.")
    mu_kappa = float(p.get("mu", 1.0)) * float(p.get("kappa", 0.0))
    stiff = max(pot["k"] * pot["mu"] if pot["kind"] == "soft_harmonic" else 0.0, mu_kappa, 1e-12)
    return _pinned_config(a, cfg, dims, sector, stream_sample, pot, mu_kappa, stiff)


def _resolve_network(a, cfg, dims, sector, stream_sample):
    """The pinned network on a harmonic AOUP network (:mod:`scoremodels.network`): the
    stiffness blocks come with the samples; the stiffness scale is the largest A_ii."""
    stiff = float(max(network.exact_epr_per_particle(a.params).max() / 2, 1e-12))
    return _pinned_config(a, cfg, dims, sector, stream_sample, {"kind": "network"}, 0.0, stiff)


def _pinned_config(a, cfg, dims, sector, stream_sample, pot, mu_kappa, stiff):
    from scoremodels.losses import Objective
    from scoremodels.nets import NetConfig

    p = a.params
    extra = {"gamma": float(p["gamma"]), "v0": float(p["v0"]), "mu_kappa": mu_kappa,
             "potential": pot, "stiffness_scale": stiff, "r_scale": 1.0, "s_scale": 1.0}
    net = NetConfig(kind="pinned", depth=0, heads=1, width=cfg.width or 32,
                    neighbours=cfg.neighbours or 8, embed_depth=cfg.depth or 2,
                    readout_depth=2, cutoff=cfg.cutoff, state_dim=a.state_dim,
                    score_dims=tuple(dims), x_dims=a.x_dims, prop_kind=a.prop_kind,
                    seed=cfg.seed, extra=extra)
    if stream_sample is not None:
        _set_scales(net, stream_sample)
    kind = "hyvarinen" if cfg.objective == "auto" else cfg.objective
    if float(p["v0"]) <= 0:
        raise UserInputError("The pinned g-score network needs v0 > 0.")
    obj = Objective(kind=kind, sigmas=[float(s) for s in cfg.sigmas], div_mode=cfg.div_mode,
                    fpe_weight=0.0, rotate=cfg.rotate, augment=cfg.augment)
    if any(s <= 0 for s in obj.sigmas):
        raise UserInputError("Noise levels (sigmas) must be positive.")
    return net, dims, sector, obj


def _set_scales(net, sample):
    """Input normalisation from a training batch: the length scale and, for the MLP on
    a linear-SDE copy, the RMS of every component (components may differ by orders of
    magnitude, e.g. bead temperatures)."""
    net.length_scale = _length_scale(sample, net)
    if net.kind == "pinned":
        import jax.numpy as jnp

        from scoremodels.losses import _ctx
        from scoremodels.nets import linear_response_score, stiffness_blocks

        ex = net.extra
        bx = np.asarray(sample["drift"], float)[:, :2]
        r_rms = float(np.sqrt((bx ** 2).mean())) / ex["v0"]
        ex["r_scale"] = r_rms if r_rms > 0 and math.isfinite(r_rms) else 1.0
        ex["r_pin"] = min(ex["r_scale"], math.sqrt(ex["gamma"] / ex["stiffness_scale"]))
        ctx = _ctx({k: jnp.asarray(v) for k, v in sample.items()})
        H, A_ii = stiffness_blocks(ctx, ctx["nb_rel"], ex)
        s = np.asarray(linear_response_score(ctx["drift"][:, :2], ctx["nb_bx"], H, ex["gamma"],
                                             ex["v0"], ex["mu_kappa"], A_ii), float)
        s_rms = float(np.sqrt((s ** 2).mean()))
        ex["s_scale"] = s_rms if s_rms > 0 and math.isfinite(s_rms) else 1.0
    if net.kind == "mlp" and net.prop_kind is None:
        rms = np.sqrt((np.asarray(sample["y"], float) ** 2).mean(0))
        net.input_scale = [float(v) if v > 0 and math.isfinite(v) else 1.0 for v in rms]


def _length_scale(sample, net) -> float:
    """Data-driven input scale: RMS neighbour distance (transformer), or RMS of the
    position / state inputs (MLP)."""
    if net.kind in ("transformer", "pinned"):
        r2 = (sample["nb_rel"] ** 2).sum(-1)
        m = sample["nb_mask"] > 0
        val = math.sqrt(r2[m].mean()) if m.any() else 1.0
    elif net.prop_kind is None:
        val = float(np.sqrt((sample["y"] ** 2).mean()))
    else:
        val = float(np.sqrt((sample["pos"] ** 2).mean()))
    return val if val > 0 and math.isfinite(val) else 1.0


# ---------------------------------------------------------------------------- training
#: settings a resumed run may change: they do not change the trained network
RESUMABLE_CHANGES = ("steps", "memory_budget_mb", "checkpoint_every")


def _checkpointed(out: Path, save, *args, **kwargs) -> None:
    """``save(*args, **kwargs)`` (orbax's checkpoint save or wait); a full disk, which orbax
    reports as an OSError or tensorstore's ValueError "RESOURCE_EXHAUSTED", is a
    UserInputError."""
    try:
        save(*args, **kwargs)
    except (OSError, ValueError) as exc:
        from simcore.io.write_errors import disk_full_error, is_space_error

        if is_space_error(exc) or "RESOURCE_EXHAUSTED" in str(exc) or \
                "No space left" in str(exc):
            raise disk_full_error(out / "checkpoints", exc, kept=(
                "The checkpoints before it are kept: free some space and rerun the same "
                "command with --resume to continue.")) from None
        raise


def _check_resumed_settings(out: Path, record: dict, cfg, given, paths) -> None:
    """Refuse a resume given other trajectories or settings than the run it continues
    (they were silently replaced by the saved ones)."""
    changed = []
    if cfg is not None:
        mine = json.loads(json.dumps(dataclasses.asdict(cfg)))
        saved = record.get("train", {})
        names = set(mine) if given is None else set(given) & set(mine)
        changed = [f"{k} ({mine[k]!r}; the run has {saved.get(k)!r})"
                   for k in sorted(names - set(RESUMABLE_CHANGES)) if mine[k] != saved.get(k)]
    if paths and [str(Path(p).resolve()) for p in paths] != record.get("trajectories"):
        changed.append(f"the trajectories (the run was trained on "
                       f"{', '.join(record.get('trajectories', []))})")
    if changed:
        raise UserInputError(
            f"--resume continues the training in {out} with its own settings and "
            f"trajectories, but these differ: {'; '.join(changed)}. Repeat the original "
            "command (only --steps, --memory-budget and the checkpoint interval may "
            "change), or start a new run with --overwrite or another --out.")


def train(paths, out, cfg: TrainConfig | None = None, resume: bool = False,
          overwrite: bool = False, quiet: bool = True, stop_after: int | None = None,
          max_time_s: float | None = None, given=None) -> Path:
    """Train a score network on the trajectories ``paths``; write the run to ``out``.

    ``stop_after``: leave after this many steps of this call (checkpointed), as if
    interrupted; ``resume`` continues a run from its latest checkpoint with its saved
    configuration and trajectories: ``cfg.steps`` may extend it, and a setting of ``cfg``
    named in ``given`` (default: all of them) or a trajectory that differs from the saved
    run's is refused, except the :data:`RESUMABLE_CHANGES`. ``max_time_s``: a wall-clock budget
    (seconds) for this call's training loop; when it is spent the run stops as with
    ``stop_after`` (checkpointed, resumable), e.g. inside a batch job's time limit.
    """
    import jax
    import jax.numpy as jnp
    import optax
    import orbax.checkpoint as ocp
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P
    from scoremodels.losses import Objective, make_loss
    from scoremodels.nets import NetConfig, build

    out = Path(out)
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    record_path = out / RUN_FILE
    if resume:
        if not record_path.exists():
            raise UserInputError(f"Nothing to resume in {out} (no {RUN_FILE}); drop --resume.")
        from scoremodels._validate import read_run_record

        record = read_run_record(out, RUN_FILE)
        try:
            saved = TrainConfig(**record["train"])
        except (UserInputError, TypeError) as exc:
            raise _damaged_record(record_path, exc, "holds unknown training settings",
                                  "start over") from None
        _check_resumed_settings(out, record, cfg, given, paths)
        if cfg is not None and cfg.steps > saved.steps:
            saved.steps = cfg.steps
        cfg = saved
        paths = [Path(p) for p in record["trajectories"]]
    else:
        cfg = cfg or TrainConfig()
        if out.exists() and not out.is_dir():
            raise UserInputError(f"The run directory {out} is an existing file; give a folder "
                                 "name for --out.")
        if out.exists() and any(out.iterdir()):
            if not overwrite:
                raise UserInputError(f"The run directory {out} already exists and is not "
                                     "empty. Pass --resume to continue it or --overwrite to "
                                     "start over.")
            shutil.rmtree(out)
        if not out.parent.exists():
            raise UserInputError(f"The folder {out.parent} does not exist.")
        try:  # now: a path through a file, a read-only or full file system, before the work
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from simcore.io.write_errors import disk_full_error, is_space_error

            if is_space_error(exc):
                raise disk_full_error(out, exc, kept="Nothing was written.") from None
            raise UserInputError(f"Cannot create the run directory {out} "
                                 f"({exc.strerror or exc}): give another --out.") from None
    if cfg.batch_size < 1 or cfg.steps < 1:
        raise UserInputError("batch_size and steps must be positive.")

    tset = sdata.TrajectorySet(paths)
    try:
        a = tset.adapter
        budget = int(cfg.memory_budget_mb * 2 ** 20)
        train_fr, val_fr = sdata.split_frames(len(tset), cfg.burn_in, cfg.val_fraction,
                                              cfg.n_blocks, cfg.stride)
        net_cfg, dims, sector, obj = resolve(tset, cfg)
        K = net_cfg.neighbours
        if obj.kind == "flow":  # targets from frame differences (scoremodels.flow)
            from scoremodels import flow

            stream, val = flow.streams(tset, cfg, train_fr, val_fr, K, budget)
        else:
            stream = sdata.BatchStream(tset, train_fr, cfg.batch_size, K, cfg.cutoff,
                                       cfg.seed, budget, cfg.particles_per_frame)
            val = sdata.fixed_samples(tset, val_fr, cfg.val_samples, K, cfg.cutoff, cfg.seed,
                                      budget)
        if resume:
            try:
                net_cfg = NetConfig.from_dict(record["net"])
                obj = Objective(**record["objective"])
            except (TypeError, ValueError, KeyError) as exc:
                raise UserInputError(
                    f"{record_path} describes no valid network or objective ({exc}); the run "
                    "directory is damaged or was edited: start over with --overwrite.") from None
        else:
            _set_scales(net_cfg, stream.batch(0))
        D_sel = a.diffusion[np.ix_(dims, dims)]
        divb = a.drift_divergence(dims)
        record = {"trajectories": [str(p.resolve()) for p in paths], "train": dataclasses.asdict(cfg),
                  "net": net_cfg.to_dict(), "objective": dataclasses.asdict(obj),
                  "adapter": json.loads(a.to_json()), "sector": sector, "score_dims": list(dims),
                  "devices": jax.local_device_count(), "time_per_frame": tset.time_per_frame}
        out.mkdir(parents=True, exist_ok=True)
        _atomic_text(record_path, json.dumps(record, indent=1))

        n_dev = jax.local_device_count()
        if cfg.batch_size % n_dev:
            raise UserInputError(f"The batch size {cfg.batch_size} is not a multiple of the "
                                 f"{n_dev} local devices.")
        mesh = jax.make_mesh((n_dev,), ("data",))
        repl, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

        model = build(net_cfg)
        graphdef, params = nnx.split(model)
        tx, sched = _optimizer(cfg)
        opt_state = tx.init(params)
        ema = params
        start = 0
        try:
            mgr = _manager(out)
            latest = mgr.latest_step() if resume else None
        except Exception as exc:  # noqa: BLE001 - orbax raises many types for a damaged folder
            from scoremodels._validate import restore_failed

            raise restore_failed(out, "latest", exc) from None
        if resume and latest is not None:
            tree = {"params": params, "ema": ema, "opt": opt_state, "step": jnp.asarray(0)}
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
            try:
                r = mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore(abstract))
            except Exception as exc:  # noqa: BLE001 - orbax raises many types
                from scoremodels._validate import restore_failed

                raise restore_failed(out, mgr.latest_step(), exc) from None
            params, ema, opt_state, start = r["params"], r["ema"], r["opt"], int(r["step"])
        params, ema, opt_state = jax.device_put((params, ema, opt_state), repl)

        loss = make_loss(obj, dims, a.prop_kind, D_sel, divb if divb is not None else 0.0)
        decay = cfg.ema

        @jax.jit
        def step_fn(params, opt_state, ema, batch, key, t):
            def lossf(p):
                return loss(nnx.merge(graphdef, p), batch, key)

            val_, grads = jax.value_and_grad(lossf)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            # EMA with a warm-up of its decay, min(decay, (1 + t)/(10 + t)): a fixed decay
            # would keep decay^steps of the random initial weights (5 % after 3000 steps
            # at 0.999), a bias that no amount of training removes
            d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
            ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, ema, params)
            return params, opt_state, ema, val_

        @jax.jit
        def eval_fn(params, batch, key):
            return loss(nnx.merge(graphdef, params), batch, key)

        base_key = jax.random.key(cfg.seed)
        val_key = jax.random.fold_in(base_key, 2 ** 31 - 1)

        def validate(p):
            if val is None:
                return float("nan")
            bs = cfg.batch_size
            n = (len(val["y"]) // bs) * bs or len(val["y"])
            tot, cnt = 0.0, 0
            for i0 in range(0, n, bs):
                b = {k: v[i0:i0 + bs] for k, v in val.items()}
                if len(b["y"]) % n_dev:
                    break
                b = jax.device_put(b, shard)
                tot += float(eval_fn(p, b, jax.random.fold_in(val_key, i0))) * len(b["y"])
                cnt += len(b["y"])
            return tot / max(cnt, 1)

        monitor = _certificate_monitor(tset, a, val_fr, net_cfg, obj, dims)
        metrics_path = out / "metrics.csv"
        rows = _read_metrics(metrics_path, start) if resume else []
        end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
        t0 = time.perf_counter()
        acc, acc_n = 0.0, 0
        bar = progress(cfg.steps, initial=start, unit="step", desc="train", quiet=quiet)
        step = start
        for step in range(start, end):
            batch = jax.device_put(stream.batch(step), shard)
            params, opt_state, ema, lv = step_fn(params, opt_state, ema, batch,
                                                 jax.random.fold_in(base_key, step),
                                                 jnp.float32(step))
            acc = acc + lv  # stays on the device: no sync, the next batch is built meanwhile
            acc_n += 1
            bar.update(1)
            done = step + 1
            if done % cfg.val_every == 0 or done == cfg.steps:
                row = {"step": done, "wall_s": round(time.perf_counter() - t0, 3),
                       "lr": float(sched(step)), "train_loss": float(acc) / acc_n,
                       "val_loss": validate(params), "val_loss_ema": validate(ema)}
                row["eps_v_monitor"] = (monitor(row["val_loss_ema"]) if monitor is not None
                                        else float("nan"))
                rows.append(row)
                bar.set_postfix(loss=f"{row['train_loss']:.4g}", val=f"{row['val_loss_ema']:.4g}")
                acc, acc_n = 0.0, 0
                _write_metrics(metrics_path, rows)
            out_of_time = max_time_s is not None and time.perf_counter() - t0 > max_time_s
            if out_of_time:
                end = done
            if done % cfg.checkpoint_every == 0 or done == end:
                tree = {"params": params, "ema": ema, "opt": opt_state,
                        "step": jnp.asarray(done)}
                _checkpointed(out, mgr.save, done, args=ocp.args.StandardSave(tree), force=True)
            if out_of_time:
                break
        bar.close()
        _checkpointed(out, mgr.wait_until_finished)
        if end > start and mgr.latest_step() != end:
            tree = {"params": params, "ema": ema, "opt": opt_state, "step": jnp.asarray(end)}
            _checkpointed(out, mgr.save, end, args=ocp.args.StandardSave(tree), force=True)
            _checkpointed(out, mgr.wait_until_finished)
        _write_metrics(metrics_path, rows)
        if rows:
            _loss_figure(rows, out / "loss.png")
        return out
    finally:
        tset.close()


def _certificate_monitor(tset, a, val_fr, net_cfg, obj, dims):
    """For g-only Hyvärinen on a hypoelliptic AOUP file: ε_v from the validation loss.

    The loss per particle |s_g|² + 2∇_g·s_g has the minimum −(Σ̇_g/γ + 2) and its excess
    is E|s − s*|² = ε_v Σ̇_g/γ, so ε_v = γ(n L + Σ̇_g/γ + 2)/Σ̇_g with L the logged loss
    (per score dimension, n = 2) and Σ̇_g = −μ⟨∇·F⟩ on (up to 20 of) the validation frames.
    A monitor (the particles of the validation set are a sample), not the certificate of
    `scoremodels epr`. None where it does not apply."""
    if (obj.kind != "hyvarinen" or a.prop_kind != "vector" or len(val_fr) == 0
            or tuple(dims) != tuple(a.p_dims)
            or not np.all(np.diag(a.diffusion)[list(a.x_dims)] == 0)):
        return None
    from scoremodels.certificate import exact_reference

    pick = np.asarray(val_fr)[np.linspace(0, len(val_fr) - 1, min(20, len(val_fr))).astype(int)]
    sig = float(np.mean(exact_reference(tset, a, pick, "propulsion")[0]))
    gamma, n = float(a.params["gamma"]), len(dims)
    if not sig > 0:
        return None
    return lambda loss: gamma * (n * loss + sig / gamma + 2.0) / sig
