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
    p = argparse.ArgumentParser(
        prog="scoremodels",
        description="Train score networks (JAX/Flax) on simcore trajectories and estimate "
        "entropy production rates from them.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("train", help="train a score network on trajectories",
                       description="Settings merge as defaults < --config < flags.")
    s.add_argument("trajectories", nargs="+", metavar="TRAJ.nc")
    s.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    s.add_argument("--config", metavar="FILE.toml", help="training settings ([train] table)")
    s.add_argument("--size", help="tiny | small | anchor (transformers) | mlp | pinned "
                   "(AOUP g-score: linear response + residual-input network) | auto")
    s.add_argument("--steps", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--optimizer", choices=["adamw", "radam"])
    s.add_argument("--objective", choices=["dsm", "dsm_g", "hyvarinen", "auto"])
    s.add_argument("--sigma", type=float, action="append", dest="sigmas",
                   help="DSM noise level (repeat for several)")
    s.add_argument("--sector", choices=["full", "propulsion", "auto"])
    s.add_argument("--neighbours", type=int, help="neighbours per particle (K)")
    s.add_argument("--cutoff", type=float, help="neighbour radius with a smooth envelope "
                   "(default: K nearest at any distance)")
    s.add_argument("--fpe-weight", type=float, help="stationary Fokker-Planck residual weight")
    s.add_argument("--rotate", action="store_true", default=None,
                   help="random-rotation augmentation")
    s.add_argument("--augment", choices=["none", "square"],
                   help="square: a random one of the 8 symmetries of the square per sample "
                   "(exact for a periodic square box)")
    s.add_argument("--memory-budget", type=float, dest="memory_budget_mb", metavar="MiB")
    s.add_argument("--seed", type=int)
    s.add_argument("--stop-after", type=int, metavar="STEPS",
                   help="stop (checkpointed) after this many steps of this call")
    s.add_argument("--max-minutes", type=float, metavar="MIN",
                   help="stop (checkpointed, resumable) when this call has trained this long")
    s.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    s.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("epr", help="per-particle and total EPR from a trained network")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("trajectories", nargs="+", metavar="TRAJ.nc")
    s.add_argument("-o", "--out", required=True, metavar="EPR.nc")
    s.add_argument("--sector", choices=["full", "propulsion", "auto"], default="auto")
    s.add_argument("--burn-in", type=float, default=0.2, help="fraction of frames skipped")
    s.add_argument("--stride", type=int, default=1)
    s.add_argument("--max-frames", type=int)
    s.add_argument("--batch-particles", type=int, default=4096,
                   help="particles evaluated at once (bounds inference memory)")
    s.add_argument("--memory-budget", type=float, default=512.0, metavar="MiB")
    s.add_argument("--grid", type=int, default=32, help="cells per side of the EPR map")
    s.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    s.add_argument("--no-exact", action="store_true", help="skip the exact reference total")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--quiet", action="store_true")
    return p


def _cmd_train(args):
    from scoremodels.train import TrainConfig, train

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
                max_time_s=None if args.max_minutes is None else 60.0 * args.max_minutes)
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
    if "epr_exact_total" in r:
        line += f"; exact {r['epr_exact_total']:.6g} ± {r['epr_exact_total_err']:.2g}"
    print(line)
    if "epr_certificate" in r:
        from scoremodels.epr import CERTIFICATE_THRESHOLD

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
    except Exception:  # noqa: BLE001 - internal errors are reported distinctly from bad input
        traceback.print_exc()
        print("scoremodels: internal error (exit 1); please report it with the traceback "
              "above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
