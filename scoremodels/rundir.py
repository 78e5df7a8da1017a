"""A training run's directory: the optimiser and orbax checkpoints, the run record
(``run.json``), ``load_run``, the metrics table and the loss figure."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING


from simcore._errors import UserInputError

if TYPE_CHECKING:
    from scoremodels.train import TrainConfig

RUN_FILE = "run.json"


def _optimizer(cfg: TrainConfig):
    import optax

    warm = max(1, min(cfg.warmup, cfg.steps - 1))
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warm, max(cfg.steps, warm + 1),
                                               end_value=cfg.lr * 1e-2)
    if cfg.optimizer == "adamw":
        opt = optax.adamw(sched, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "radam":
        opt = optax.chain(optax.radam(sched), optax.add_decayed_weights(cfg.weight_decay)
                          if cfg.weight_decay else optax.identity())
    else:
        raise UserInputError(f"Unknown optimizer {cfg.optimizer!r}: use adamw or radam.")
    return optax.chain(optax.clip_by_global_norm(cfg.clip), opt), sched


def _manager(run_dir: Path):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager((run_dir / "checkpoints").absolute(),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=2))



def _damaged_record(path: Path, exc: Exception, bad_shape: str, redo: str) -> UserInputError:
    """A run.json that validation refused (``UserInputError``: its values) or that does not
    fit the settings' shape at all (``bad_shape``, e.g. unknown keys): one paragraph."""
    if isinstance(exc, UserInputError):
        what = f"holds invalid values ({str(exc).split('. Fix them')[0]})"
    else:
        what = f"{bad_shape} ({exc})"
    return UserInputError(f"{path} {what}; the run directory is damaged or was edited: "
                          f"{redo} with --overwrite.")

def load_run(run_dir, use_ema: bool = True):
    """``(model, record)`` of a trained run: the network with its latest (EMA)
    parameters and the run.json record."""
    import jax
    import orbax.checkpoint as ocp
    from flax import nnx

    from scoremodels.nets import NetConfig, build

    from scoremodels._validate import read_run_record, restore_failed

    run_dir = Path(run_dir)
    record = read_run_record(run_dir, RUN_FILE)
    try:
        net_cfg = NetConfig.from_dict(record["net"])
        model = build(net_cfg)
        from scoremodels.train import TrainConfig  # the settings' home (imports this module)

        train_cfg = TrainConfig(**record["train"])
    except (UserInputError, TypeError, ValueError, KeyError) as exc:
        raise _damaged_record(run_dir / RUN_FILE, exc, "describes no valid network or "
                              "training settings", "train again") from None
    try:
        mgr = _manager(run_dir)
        step = mgr.latest_step()
    except Exception as exc:  # noqa: BLE001 - orbax raises many types for a damaged folder
        raise restore_failed(run_dir, "latest", exc) from None
    if step is None:
        raise UserInputError(f"The run {run_dir} has no checkpoint yet.")
    graphdef, params = nnx.split(model)
    tx, _ = _optimizer(train_cfg)
    tree = {"params": params, "ema": params, "opt": tx.init(params), "step": jax.numpy.asarray(0)}
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
    try:
        restored = mgr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as exc:  # noqa: BLE001
        raise restore_failed(run_dir, step, exc) from None
    model = nnx.merge(graphdef, restored["ema" if use_ema else "params"])
    record["checkpoint_step"] = int(step)
    return model, record



def _atomic_text(path: Path, text: str):
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)


FIELDS = ["step", "wall_s", "lr", "train_loss", "val_loss", "val_loss_ema", "eps_v_monitor"]


def _read_metrics(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)
                if float(r["step"]) <= upto]


def _write_metrics(path: Path, rows):
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (int(r[k]) if k == "step" else r.get(k, float("nan")))
                        for k in FIELDS})
    os.replace(tmp, path)


def _loss_figure(rows, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(s, [r["train_loss"] for r in rows], label="train")
    ax.plot(s, [r["val_loss"] for r in rows], label="validation")
    ax.plot(s, [r["val_loss_ema"] for r in rows], label="validation (EMA)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
