"""``scoremodels train | epr``.

Exit codes (as ``simcore``): 0 success, 2 bad input (one paragraph on stderr, no
traceback), 1 internal error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
import traceback
import warnings

from simcore._errors import UserInputError


def _parser() -> argparse.ArgumentParser:
    import inspect

    from scoremodels.epr import estimate
    from scoremodels.train import TrainConfig

    train_defaults = {f.name: (f.default if f.default is not dataclasses.MISSING
                               else f.default_factory())
                      for f in dataclasses.fields(TrainConfig)}
    epr_defaults = {k: v.default for k, v in inspect.signature(estimate).parameters.items()
                    if v.default is not inspect.Parameter.empty}

    def tdef(name: str) -> str:
        """"(default: X)" for a training setting, from TrainConfig (the flags themselves
        default to None so that a --config file is not overridden)."""
        value = train_defaults[name]
        shown = " ".join(map(str, value)) if isinstance(value, list) else value
        return f"(default: {shown})"

    p = argparse.ArgumentParser(
        prog="scoremodels",
        description="Train score networks (JAX/Flax) on simcore trajectories and estimate "
        "entropy production rates from them (docs/scoremodels.md).")
    from simcore import __version__

    p.add_argument("--version", action="version",
                   version=f"scoremodels (simcore {__version__})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config_only = sorted(set(train_defaults) - {
        "size", "steps", "batch_size", "lr", "optimizer", "objective", "sigmas", "sector",
        "neighbours", "cutoff", "fpe_weight", "rotate", "augment", "memory_budget_mb", "seed"})
    s = sub.add_parser(
        "train", help="train a score network on trajectories",
        description="Train a score network s ≈ ∇ln p on one or more simcore trajectories "
        "of the same model and write it, with orbax checkpoints, to RUN_DIR. Settings merge "
        "as defaults < --config < flags; the settings without a flag ("
        + ", ".join(config_only) + ") are set in the TOML file's [train] table.")
    s.add_argument("trajectories", nargs="+", metavar="TRAJ.nc",
                   help="simcore trajectories (abp or linear model) to learn from")
    s.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run directory (network, checkpoints, metrics.csv)")
    s.add_argument("--config", metavar="FILE.toml",
                   help="training settings in a TOML file ([train] table, the names of "
                   "scoremodels.train.TrainConfig)")
    s.add_argument("--size", choices=["tiny", "small", "anchor", "mlp", "pinned", "auto"],
                   help="network: tiny | small | anchor (local transformers), mlp, pinned "
                   "(AOUP g-score: linear response + residual-input network); auto: small for "
                   f"interacting particles, else mlp {tdef('size')}")
    s.add_argument("--steps", type=int, help=f"optimiser steps {tdef('steps')}")
    s.add_argument("--batch-size", type=int, help=f"samples per step {tdef('batch_size')}")
    s.add_argument("--lr", type=float, help=f"peak learning rate (after warm-up) {tdef('lr')}")
    s.add_argument("--optimizer", choices=["adamw", "radam"], help=f"optimiser {tdef('optimizer')}")
    s.add_argument("--objective", choices=["dsm", "dsm_g", "hyvarinen", "flow", "auto"],
                   help="denoising score matching, DSM with noise on the own g only, the "
                   "Hyvärinen objective, or flow (regression on AOUP frame differences, "
                   "flow_step / flow_scheme in --config); auto: hyvarinen for mlp and pinned, else dsm "
                   f"{tdef('objective')}")
    s.add_argument("--sigma", type=float, action="append", dest="sigmas", metavar="SIGMA",
                   help="DSM noise level in state units (repeat for several; evaluation at the "
                   f"smallest) {tdef('sigmas')}")
    s.add_argument("--sector", choices=["full", "propulsion", "auto"],
                   help="score dimensions: all noisy ones (full) or the propulsion only; auto: "
                   f"propulsion when the positions are noiseless (D_t = 0), else full {tdef('sector')}")
    s.add_argument("--neighbours", type=int, metavar="K",
                   help="neighbours per particle seen by the transformer (default: the size's "
                   "own, e.g. 16 for small)")
    s.add_argument("--cutoff", type=float, metavar="R",
                   help="neighbour radius in model lengths, with a smooth envelope (default: "
                   "the K nearest at any distance)")
    s.add_argument("--fpe-weight", type=float, metavar="LAMBDA",
                   help="weight of the stationary Fokker-Planck residual (mlp on a linear "
                   f"copy or a free particle, sector full only) {tdef('fpe_weight')}")
    s.add_argument("--rotate", action="store_true", default=None,
                   help=f"random-rotation augmentation {tdef('rotate')}")
    s.add_argument("--augment", choices=["none", "square"],
                   help="square: a random one of the 8 symmetries of the square per sample "
                   f"(exact for a periodic square box) {tdef('augment')}")
    s.add_argument("--memory-budget", type=float, dest="memory_budget_mb", metavar="MiB",
                   help="memory for the frames and samples held at once "
                   f"{tdef('memory_budget_mb')}")
    s.add_argument("--seed", type=int, help=f"seed of initialisation and batches {tdef('seed')}")
    s.add_argument("--stop-after", type=int, metavar="STEPS",
                   help="stop (checkpointed, resumable) after this many steps of this call "
                   "(default: train to --steps)")
    s.add_argument("--max-minutes", type=float, metavar="MIN",
                   help="stop (checkpointed, resumable) when this call has trained this long "
                   "(default: no limit)")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR to bit-identical parameters")
    s.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser(
        "epr", help="per-particle and total EPR from a trained network",
        description="Evaluate the network of RUN_DIR on trajectories and write the local EPR, "
        "the totals with block-bootstrap errors and, where the exact total is known score-free "
        "(ABP/AOUP, linear), the score-free certificate of the learned field, to EPR.nc. "
        "Rates are per particle per model time unit.")
    s.add_argument("run_dir", metavar="RUN_DIR", help="run directory of `scoremodels train`")
    s.add_argument("trajectories", nargs="+", metavar="TRAJ.nc",
                   help="trajectories of the model the network was trained on")
    s.add_argument("-o", "--out", required=True, metavar="EPR.nc", help="output NetCDF file")
    s.add_argument("--sector", choices=["full", "propulsion", "auto"],
                   default=epr_defaults["sector"],
                   help="score dimensions (auto: the training run's) (default: %(default)s)")
    s.add_argument("--burn-in", type=float, default=epr_defaults["burn_in"], metavar="FRACTION",
                   help="fraction of each trajectory's frames skipped (default: %(default)s)")
    s.add_argument("--stride", type=int, default=epr_defaults["stride"],
                   help="use every STRIDE-th frame (default: %(default)s)")
    s.add_argument("--max-frames", type=int, default=epr_defaults["max_frames"],
                   help="use only the first MAX_FRAMES frames after burn-in and stride "
                   "(default: all)")
    s.add_argument("--batch-particles", type=int, default=epr_defaults["batch_particles"],
                   help="particles evaluated at once (bounds inference memory) "
                   "(default: %(default)s)")
    s.add_argument("--memory-budget", type=float, default=epr_defaults["memory_budget_mb"],
                   metavar="MiB", help="memory for the frames read at once (default: %(default)s)")
    s.add_argument("--grid", type=int, default=epr_defaults["grid"],
                   help="cells per side of the EPR map over the box (default: %(default)s)")
    s.add_argument("--no-ema", action="store_true",
                   help="use the raw weights, not their exponential moving average")
    s.add_argument("--no-exact", action="store_true",
                   help="skip the exact score-free reference total and the certificate")
    s.add_argument("--overwrite", action="store_true", help="replace an existing EPR.nc")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _cmd_train(args):
    from scoremodels.train import TrainConfig, train

    if args.max_minutes is not None and not args.max_minutes >= 0:  # NaN too
        raise UserInputError(f"--max-minutes must be a number of minutes >= 0 (got "
                             f"{args.max_minutes}); 0 stops after the first step.")
    values = TrainConfig.from_toml(args.config) if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    try:
        cfg = TrainConfig(**values)
    except TypeError as exc:
        raise UserInputError(f"Bad training settings: {exc}.") from None
    out = train(args.trajectories, args.out, cfg, resume=args.resume, overwrite=args.overwrite,
                quiet=args.quiet, stop_after=args.stop_after,
                max_time_s=None if args.max_minutes is None else 60.0 * args.max_minutes,
                given=set(values))
    print(f"Wrote {out}")


def _cmd_epr(args):
    from scoremodels.epr import estimate

    r = estimate(args.run_dir, args.trajectories, args.out, sector=args.sector,
                 burn_in=args.burn_in, stride=args.stride, max_frames=args.max_frames,
                 batch_particles=args.batch_particles, memory_budget_mb=args.memory_budget,
                 grid=args.grid, use_ema=not args.no_ema, exact=not args.no_exact,
                 overwrite=args.overwrite, quiet=args.quiet)
    line = (f"EPR per particle ({r['sector']} sector, {r['frames']} frames): "
            f"{r['epr_total']:.6g} ± {r['epr_total_err']:.2g} (|v|^2 form), "
            f"{r['epr_total_div']:.6g} ± {r['epr_total_div_err']:.2g} (div v form)")
    if r.get("epr_exact_method") == "sampled":
        line += (f"; score-free (sampled on the same frames) {r['epr_exact_total']:.6g} ± "
                 f"{r['epr_exact_total_err']:.2g}")
    elif "epr_exact_total" in r:
        line += f"; exact (closed form) {r['epr_exact_total']:.6g}"
    if "epr_closed_form" in r:
        line += f"; closed form {r['epr_closed_form']:.6g} ({r['epr_closed_form_how']})"
    print(line)
    if "epr_certificate" in r:
        from scoremodels.certificate import CERTIFICATE_THRESHOLD

        verdict = "passed" if r["certificate_passed"] else "FAILED"
        print(f"score-free certificate eps_v = {r['epr_certificate']:.4g} ± "
              f"{r['epr_certificate_err']:.2g} (threshold {CERTIFICATE_THRESHOLD:g}: {verdict}); "
              f"lower bound on the exact EPR 2 div - sq = {r['epr_lower_bound']:.6g} ± "
              f"{r['epr_lower_bound_err']:.2g}, div^2/sq = {r['epr_lower_bound_cs']:.6g} "
              "(per particle per time unit)")
        if not r["certificate_passed"]:
            print(textwrap.fill(
                f"WARNING: the learned probability-flow velocity fails the score-free "
                f"certificate (eps_v = {r['epr_certificate']:.4g} > {CERTIFICATE_THRESHOLD:g}): "
                "its local EPR (epr_local, epr_map, epr_class_mean) is not a measurement. For "
                "hypoelliptic AOUP files use -mu div_i F_i "
                "(simcore.analysis.active.exact_epr_local) as the local map.", width=100),
                file=sys.stderr)
    print(f"Wrote {args.out}")


def _quiet_orbax_unraisable(unraisable) -> None:
    """Drop the "Exception ignored in <coroutine ...>" reports of orbax's reader coroutines
    and the "Event loop is closed" reports of tensorstore's late callbacks, left behind
    when a damaged checkpoint fails to restore (the failure itself is reported as one
    paragraph); everything else goes to the default hook."""
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and "orbax" in code.co_filename:
        return
    if unraisable.object is None and isinstance(unraisable.exc_value, RuntimeError) \
            and str(unraisable.exc_value) == "Event loop is closed":
        return
    sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scoremodels`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    if sys.unraisablehook is sys.__unraisablehook__:
        sys.unraisablehook = _quiet_orbax_unraisable
    warnings.showwarning = lambda m, *a, **k: print(f"warning: {m}", file=sys.stderr)
    handlers = {"train": _cmd_train, "epr": _cmd_epr}
    try:
        handlers[args.command](args)
    except UserInputError as err:
        print(textwrap.fill(f"scoremodels {args.command}: error: {err}", width=100),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scoremodels: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - internal errors are reported distinctly from bad input
        from simcore._errors import path_error
        from simcore.io.write_errors import disk_full_error, is_space_error

        known = path_error(exc)
        if known is None and is_space_error(exc):  # metrics, records, figures of a run
            known = disk_full_error(exc.filename or args.out, exc, kept=(
                "Free some space and run the command again (a training continues from its "
                "last checkpoint with --resume)."))
        if known is not None:
            print(textwrap.fill(f"scoremodels {args.command}: error: {known}", width=100),
                  file=sys.stderr)
            return 2
        traceback.print_exc()
        print("scoremodels: internal error (exit 1); please report it with the traceback "
              "above.", file=sys.stderr)
        return 1
    return 0


def command() -> None:
    """The ``scoremodels`` console script: :func:`main`, then the process ends without the
    interpreter's teardown (:mod:`simcore._exit`: ~0.2-0.3 s of a short command)."""
    from simcore._exit import run_and_exit

    run_and_exit(main)


if __name__ == "__main__":
    command()
