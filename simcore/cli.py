"""``simcore presets | run | analyze | sweep | plot | info | export`` (README, docs/).

Exit codes: 0 success, 2 bad input (one paragraph on stderr, no traceback), 1 internal
error, 130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM (both checkpoint first).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import traceback
import warnings
from pathlib import Path

from simcore._errors import UserInputError, bad_paths_are_user_errors
from simcore._interrupt import RunInterrupted
from simcore.sweep import SweepFailed


def _parser(analysis_options: bool = True) -> argparse.ArgumentParser:
    """The command line. ``analysis_options=False`` leaves out the ``analyze`` options,
    whose list imports every engine (0.2 s a ``simcore run`` does not need)."""
    from simcore import __version__
    from simcore.models import engine_names as model_names

    p = argparse.ArgumentParser(
        prog="simcore",
        description="Numba-JIT simulations of fish schools, active particles and hard discs, "
        "written as NetCDF trajectories, and their entropy analyses.",
    )
    p.add_argument("--version", action="version", version=f"simcore {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("presets", help="list presets with their parameters")
    s.add_argument("model", nargs="?", choices=model_names(), metavar="MODEL")

    s = sub.add_parser("run", help="run a model and write a trajectory",
                       description="Run MODEL; parameters merge as preset < --config < --set "
                       "< --steps/--seed/--write-every.")
    s.add_argument("model", metavar="MODEL", help=f"one of: {', '.join(model_names())}")
    s.add_argument("--preset", help="named parameter set (see `simcore presets MODEL`)")
    s.add_argument("--config", metavar="FILE.toml", help="TOML file of parameters")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter (repeatable); VALUE is read as TOML")
    s.add_argument("--steps", type=int, help="number of integration steps")
    s.add_argument("--seed", type=int, help="root random seed")
    s.add_argument("--write-every", type=int, help="steps between written frames")
    s.add_argument("-o", "--out", required=True, metavar="OUT.nc", help="output trajectory")
    s.add_argument("--format", choices=["netcdf4", "amber"],
                   help="netcdf4 (compressed, default) or amber (NETCDF3, for MDAnalysis/VMD)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run")
    s.add_argument("--init-from", metavar="FILE[:FRAME]",
                   help="start from frame FRAME (default: the last) of a simcore file of the "
                        "same model, with the parameters and seed given now")
    s.add_argument("--extend", action="store_true",
                   help="continue the finished run in OUT to the larger --steps (or t_end) "
                        "given now: the same bits as the longer run from the start")
    s.add_argument("--threads", type=int,
                   help="Numba threads (default: this process's cores that other processes "
                        "leave idle; results do not depend on it)")
    s.add_argument("--quiet", action="store_true", help="no progress bar or messages")

    s = sub.add_parser("analyze", help="compute the model's diagnostics of a trajectory "
                       "or of a sweep folder (combined along the sweep parameters)")
    s.add_argument("input", metavar="IN.nc|SWEEP_DIR")
    s.add_argument("-o", "--out", metavar="OUT.nc", help="write the diagnostics as NetCDF "
                   "(for a sweep folder: default SWEEP_DIR/diagnostics.nc)")
    if analysis_options:
        _add_analysis_options(s)
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")

    s = sub.add_parser("sweep", help="run many runs of a model (resumable)",
                       description="Run every missing run of the sweep in SWEEP.toml (see "
                       "docs/sweeps.md); finished runs are skipped, interrupted ones resumed.")
    s.add_argument("sweep_file", metavar="SWEEP.toml")
    s.add_argument("--backend", choices=["serial", "processes", "dask"], default="serial")
    s.add_argument("--scheduler", metavar="ADDRESS|local|slurm|pbs",
                   help="dask only: local (default), tcp://HOST:PORT, slurm or pbs")
    s.add_argument("--workers", type=int, help="parallel workers (default: usable cores)")
    s.add_argument("--threads-per-worker", type=int,
                   help="Numba threads per run (default 1 for processes/dask)")
    s.add_argument("--out", metavar="DIR", help="output folder (default: the sweep file's out)")
    g = s.add_argument_group("batch jobs (--scheduler slurm|pbs, via dask-jobqueue)")
    g.add_argument("--cores", type=int, help="cores per job (one worker per core)")
    g.add_argument("--memory", help="memory per job, e.g. 8GB")
    g.add_argument("--walltime", help="wall time per job, e.g. 02:00:00")
    g.add_argument("--queue", help="partition / queue")
    g.add_argument("--account", help="account / project to charge")
    g.add_argument("--jobs", type=int, default=1, help="number of batch jobs (default 1)")
    s.add_argument("--dry-run", action="store_true",
                   help="list the runs and their states (and the job script) without running")
    s.add_argument("--print-job-script", action="store_true",
                   help="print the SLURM/PBS job script and exit (SLURM/PBS need not be present)")
    s.add_argument("--quiet", action="store_true", help="no progress messages")

    s = sub.add_parser("plot", help="draw a trajectory's diagnostics and a snapshot, or a "
                       "sweep folder's diagnostics against its parameters")
    s.add_argument("input", metavar="IN.nc|SWEEP_DIR")
    s.add_argument("-o", "--out", metavar="FIG.png|ANIM.gif",
                   help="output figure (default: IN.png, or IN.gif with --animate)")
    s.add_argument("--animate", action="store_true", help="write a GIF animation")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")

    s = sub.add_parser("info", help="summarise a trajectory file or a sweep folder")
    s.add_argument("input", metavar="FILE.nc|SWEEP_DIR")

    s = sub.add_parser("export", help="convert a trajectory (GSD, extended XYZ, LAMMPS dump) "
                       "or write a PDB topology for it",
                       description="Write the trajectory in another tool's format (--to with "
                       "-o) and/or a PDB topology for MDTraj, MDAnalysis and VMD (--topology). "
                       "Lengths and times stay model units; velocities are exported only where "
                       "the file has them; how each format states the box or walls: "
                       "docs/interop.md.")
    s.add_argument("input", metavar="FILE.nc", help="simcore trajectory (also a running "
                   "run's OUT.nc.part)")
    s.add_argument("--to", choices=["gsd", "extxyz", "lammpstrj"],
                   help="gsd (HOOMD, freud, OVITO), extxyz (ASE, OVITO) or lammpstrj (LAMMPS "
                   "text dump); needs -o")
    s.add_argument("-o", "--out", metavar="OUT", help="the converted trajectory (with --to)")
    s.add_argument("--topology", metavar="TOP.pdb",
                   help="PDB topology to write (name/element H, residue PAR per particle)")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _add_analysis_options(parser) -> None:
    """``--NAME`` for every option of the engines' default analyses (each engine record's
    ``analysis_options``); the help says which engines take it."""
    from simcore.models import engine_names, get_engine

    options: dict[str, tuple] = {}
    for name in engine_names():
        for option in get_engine(name).analysis_options:
            first, engines = options.get(option.name, (option, []))
            options[option.name] = (first, engines + [name])
    for name, (option, engines) in options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=f"option_{name}",
                            choices=option.choices, default=None,
                            help=f"{', '.join(engines)} files: {option.help}")


def _analysis_kwargs(args, model: str) -> dict:
    """The analysis options given on the command line, checked against the engine's."""
    from simcore.models import get_engine

    given = {k[len("option_"):]: v for k, v in vars(args).items()
             if k.startswith("option_") and v is not None}
    accepted = get_engine(model).option_names()
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        flags = ", ".join("--" + u.replace("_", "-") for u in unknown)
        raise UserInputError(f"{flags} does not apply to '{model}' files (their analysis takes "
                             f"{', '.join('--' + a for a in accepted) or 'no options'}).")
    return given


def _cmd_export(args) -> None:
    from simcore.interop import write_topology
    from simcore.io.export import export_trajectory

    if args.to is None and args.topology is None:
        raise UserInputError("Nothing to export: give --to gsd|extxyz|lammpstrj with -o OUT "
                             "(a converted trajectory) and/or --topology TOP.pdb.")
    if (args.to is None) != (args.out is None):
        raise UserInputError("--to FORMAT and -o OUT go together: --to names the format of "
                             "the converted trajectory, -o the file to write it to.")
    outs = [Path(p) for p in (args.out, args.topology) if p is not None]
    if len(outs) == 2 and outs[0].resolve() == outs[1].resolve():
        raise UserInputError(f"-o and --topology name the same file {outs[0]}; give two names.")
    for out in outs:
        _check_new_output(out, args.overwrite, inputs=[args.input])
    if args.to is not None:
        out = export_trajectory(args.input, args.out, args.to, quiet=args.quiet)
        print(f"wrote {out} ({args.to})")
    if args.topology is not None:
        out = write_topology(args.input, args.topology)
        print(f"wrote {out}")


def _cmd_presets(args) -> None:
    from simcore.config import presets
    from simcore.models import engine_names, get_engine

    for name in [args.model] if args.model else engine_names():
        model = get_engine(name)
        defaults = model.Params()
        print(f"{name}:")
        validated = presets(name)
        for preset, params in validated.items():
            print(f"  {preset}: {model.preset_docs.get(preset, '')}")
            changed = {k: v for k, v in params.model_dump().items()
                       if getattr(defaults, k) != v}
            run_keys = {k: v for k, v in model.presets[preset].items() if k not in changed
                        and k not in params.model_dump()}
            shown = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in {**changed, **run_keys}.items())
            print(textwrap.fill(shown, width=88, initial_indent="      ",
                                subsequent_indent="      "))
        print("  defaults: " + ", ".join(f"{k}={v}" for k, v in defaults.model_dump().items()))


def _cmd_run(args) -> None:
    from simcore.config import resolve
    from simcore.driver import run_model

    overrides = list(args.overrides)
    if args.init_from is not None:
        overrides.append(f"init_from={json.dumps(args.init_from)}")
    params, settings, preset = resolve(
        args.model, preset=args.preset, config=args.config, overrides=overrides,
        steps=args.steps, seed=args.seed, write_every=args.write_every, format=args.format,
    )
    run_model(args.model, params, settings, args.out, preset=preset, overwrite=args.overwrite,
              resume=args.resume, extend=args.extend, threads=args.threads, quiet=args.quiet,
              argv=sys.argv)


# every simcore file has these (velocities only where they are velocities; an AMBER file
# without a periodic axis has no cell variables)
REQUIRED_VARIABLES = ("time", "coordinates")


def _open_checked(path):
    """``open_trajectory(path)``, with a file that lacks the variables every simcore
    trajectory has (a truncated or foreign file) reported as a UserInputError."""
    import netCDF4

    from simcore.io.trajectory import open_trajectory, read_attrs

    read_attrs(path)  # a missing, unreadable or non-simcore file: its own message
    try:
        with netCDF4.Dataset(path, "r") as nc:
            missing = [v for v in REQUIRED_VARIABLES if v not in nc.variables]
    except OSError:
        missing = []
    if missing:
        raise UserInputError(
            f"{path} has simcore metadata but lacks the variable(s) {', '.join(missing)} that "
            "every simcore trajectory has; it is truncated, damaged or was not written by "
            "`simcore run`. Rerun the simulation.")
    return open_trajectory(path)


def _check_new_output(path: Path, overwrite: bool, inputs=()) -> None:
    from simcore.io.outputs import check_new_output

    check_new_output(path, overwrite, inputs)


def _cmd_sweep(args) -> None:
    from simcore.sweep import ClusterOptions, describe, job_script, plan_sweep, run_sweep

    options = ClusterOptions(cores=args.cores, memory=args.memory, walltime=args.walltime,
                             queue=args.queue, account=args.account, jobs=args.jobs)
    if args.print_job_script or args.dry_run:
        if args.scheduler in ("slurm", "pbs"):
            script = job_script(args.scheduler, options,
                                threads_per_worker=args.threads_per_worker or 1)
            if args.print_job_script:
                print(script, end="")
                return
            print(f"# {args.scheduler.upper()} job script ({args.jobs} job(s); the scheduler "
                  f"address is filled in at run time):\n{script}")
        elif args.print_job_script:
            raise UserInputError("--print-job-script needs --backend dask --scheduler slurm "
                                 "(or pbs).")
        print(describe(plan_sweep(args.sweep_file, out=args.out)))
        return
    run_sweep(args.sweep_file, backend=args.backend, scheduler=args.scheduler,
              workers=args.workers, threads_per_worker=args.threads_per_worker, out=args.out,
              cluster=options, quiet=args.quiet, argv=sys.argv)


def _cmd_analyze(args) -> None:
    from simcore.analysis import analyze_dataset, summarize
    from simcore.sweep import is_sweep_folder

    if is_sweep_folder(args.input):
        _analyze_sweep(args)
        return
    if Path(args.input).is_dir():
        raise UserInputError(f"{args.input} is a folder but not a sweep folder (it has no "
                             "manifest.json); give a trajectory file or a sweep's output folder.")
    if args.out:
        _check_new_output(Path(args.out), args.overwrite, inputs=[args.input])
    with _open_checked(args.input) as ds:
        from simcore._memory import check_analysis_memory

        check_analysis_memory(ds, args.input)
        result = analyze_dataset(ds, progress=True, **_analysis_kwargs(args, ds.simcore.model))
        print(f"{args.input}: model {ds.simcore.model}, {ds.sizes['time']} frames, "
              f"{ds.sizes['atom']} agents")
    print(summarize(result))
    if args.out:
        from simcore.io.results import write_dataset

        write_dataset(result, args.out)
        print(f"Wrote {args.out}")


def _analyze_sweep(args) -> None:
    from simcore.io.results import write_dataset
    from simcore.sweep import analyze_sweep, read_manifest

    out = Path(args.out) if args.out else Path(args.input) / "diagnostics.nc"
    _check_new_output(out, args.overwrite)
    kwargs = _analysis_kwargs(args, read_manifest(args.input)["model"])
    result = analyze_sweep(args.input, quiet=False, **kwargs)
    dims = result.attrs["simcore_sweep_dims"].split()
    print(f"{args.input}: sweep of model {result.attrs['simcore_model']}, dimensions "
          + ", ".join(f"{d} ({result.sizes[d]})" for d in dims))
    write_dataset(result, out)
    print(f"Wrote {out}")


def _cmd_plot(args) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; a library import never changes a notebook's backend
    from simcore.plotting import plot_file
    from simcore.sweep import is_sweep_folder

    src = Path(args.input)
    if is_sweep_folder(src):
        _plot_sweep_folder(args, src)
        return
    out = Path(args.out) if args.out else src.with_suffix(".gif" if args.animate else ".png")
    _check_new_output(out, args.overwrite, inputs=[src])
    _open_checked(src).close()
    plot_file(src, out, animate=args.animate)
    print(f"Wrote {out}")


def _plot_sweep_folder(args, folder: Path) -> None:
    from simcore.plotting import save_figure
    from simcore.plotting.sweep import plot_sweep_folder
    from simcore.sweep import analyze_sweep

    if args.animate:
        raise UserInputError(f"{folder} is a sweep folder: animate one of its runs "
                             f"(simcore plot {folder}/RUN.nc --animate).")
    out = Path(args.out) if args.out else folder / "sweep.png"
    _check_new_output(out, args.overwrite)
    save_figure(plot_sweep_folder(analyze_sweep(folder, quiet=False)), out)
    print(f"Wrote {out}")


def _info_sweep_folder(folder: Path) -> None:
    from collections import Counter

    from simcore.sweep import read_manifest

    record = read_manifest(folder)
    states = Counter(run["state"] for run in record["runs"])
    print(f"sweep:      {folder}")
    print(f"model:      {record['model']}")
    print("dimensions: " + ", ".join(f"{d} ({n})" for d, n in zip(record["dims"],
                                                                  record["shape"])))
    print(f"runs:       {len(record['runs'])} ("
          + ", ".join(f"{n} {state}" for state, n in sorted(states.items())) + ")")
    for axis in record["axes"]:
        values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in axis["values"]]
        print(f"  {axis['name']}: {values}")


def _cmd_info(args) -> None:
    from simcore.sweep import is_sweep_folder

    if is_sweep_folder(args.input):
        _info_sweep_folder(Path(args.input))
        return
    with _open_checked(args.input) as ds:
        acc = ds.simcore
        _ = acc.params  # decode (and check) run_parameters before printing anything
        t = ds["time"].values
        print(f"file:       {args.input}")
        if "simcore_partial" in ds.attrs:
            print(f"state:      {ds.attrs['simcore_partial']}")
        print(f"model:      {acc.model}" + (f" (preset {acc.preset})" if acc.preset else ""))
        if "component" in ds.sizes:  # the linear model: d-component states, not space
            d = ds.sizes["component"]
            print(f"agents:     {ds.sizes['atom']}  (independent copies of a {d}-component "
                  f"state x; coordinates hold x_0..x_{min(d, 3) - 1})")
        else:
            print(f"agents:     {ds.sizes['atom']}  ({acc.ndim}D)")
        print(f"frames:     {ds.sizes['time']}  (t = {t[0]:g} .. {t[-1]:g} model time units)")
        print(f"box:        {acc.box.tolist()}  (0 = not periodic)")
        if "simcore_boundary" in ds.attrs:
            hi = ds.attrs.get("simcore_box_hi")
            print(f"container:  {ds.attrs['simcore_boundary']} (x y z)"
                  + (f", box from ({ds.attrs.get('simcore_box_lo')}) to ({hi})"
                     if hi is not None else ""))
        print(f"variables:  {', '.join(sorted(ds.data_vars))}")
        print(f"parameters: {json.dumps(acc.params.model_dump())}")
        print(f"run:        {json.dumps(acc.run_settings.model_dump())}")
        prov = acc.provenance
        print(f"written by: simcore {prov.get('versions', {}).get('simcore')} on "
              f"{prov.get('host')} at {prov.get('utc_start')} (git {prov.get('git_commit')})")


def _paragraph(text: str) -> str:
    """Wrap an error at 100 columns without breaking paths at their hyphens or slashes
    (so a path can be copied from the message)."""
    return textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``simcore`` command; returns the exit code."""
    code = _main(argv)
    from simcore.io.trajectory import FAILED_HANDLES

    if FAILED_HANDLES:  # skip interpreter teardown, which would close them again (see there)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = _parser(analysis_options="analyze" in argv).parse_args(argv)  # no abbreviations
    warnings.showwarning = _show_warning
    handlers = {"presets": _cmd_presets, "run": _cmd_run, "analyze": _cmd_analyze,
                "plot": _cmd_plot, "info": _cmd_info, "sweep": _cmd_sweep,
                "export": _cmd_export}
    try:
        with bad_paths_are_user_errors():
            handlers[args.command](args)
    except UserInputError as err:
        print(_paragraph(f"simcore {args.command}: error: {err}"), file=sys.stderr)
        return 2
    except RunInterrupted as exc:
        print(f"simcore: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("simcore: interrupted", file=sys.stderr)
        return 130
    except SweepFailed as err:
        print(_paragraph(f"simcore {args.command}: {err}"), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except Exception:  # noqa: BLE001 - report internal errors distinctly from bad input
        traceback.print_exc()
        print("simcore: internal error (exit 1); please report it with the traceback above.",
              file=sys.stderr)
        return 1
    return 0


def command() -> None:
    """The ``simcore`` console script: :func:`main`, then the process ends without the
    interpreter's teardown (:mod:`simcore._exit`: ~0.2-0.3 s of a short command)."""
    from simcore._exit import run_and_exit

    run_and_exit(main)


if __name__ == "__main__":
    command()
