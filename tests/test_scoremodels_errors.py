"""Issue 12: scoremodels refuses bad settings and damaged run directories with exit 2 and
one paragraph (no traceback): --lr nan, wrong types, corrupt run.json, corrupt orbax
checkpoints, for both `train --resume` and `epr`."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import simcore
from scoremodels.cli import main

from conftest import assert_one_paragraph


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small ABP trajectory and a tiny network trained on it for 4 steps."""
    root = tmp_path_factory.mktemp("smerr")
    traj = root / "abp.nc"
    simcore.run("abp", seed=3, steps=400, write_every=20, out=traj,
                overrides={"n": 32, "phi": 0.3, "potential": "soft_harmonic", "v0": 1.0,
                           "D_t": 0.2, "D_r": 0.5, "dt": 1e-2, "init": "uniform"})
    run = root / "run"
    assert main(["train", str(traj), "--out", str(run), "--size", "tiny", "--steps", "4",
                 "--batch-size", "16", "--memory-budget", "0.05", "--quiet"]) == 0
    return traj, run


def _err(capsys):
    err = capsys.readouterr().err
    # the CLI prints "internal error" with any traceback of its own; a bare "Traceback" may
    # also come from orbax's background asyncio threads of an earlier test in this process,
    # reported by Python itself as unraisable ("Exception ignored in", "Task exception was
    # never retrieved")
    assert "internal error" not in err
    background = ("Exception ignored in", "Task exception was never retrieved")
    assert "Traceback" not in err or any(b in err for b in background)
    return " ".join(err.split())


@pytest.mark.parametrize("flags,fragment", [
    (["--lr", "nan"], "lr must be a finite number (got nan)"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--lr=-1e-3"], "lr must be >= 0"),
    (["--sigma", "nan"], "sigmas must be a finite number"),
    (["--steps", "0"], "steps must be >= 1"),
    (["--memory-budget", "inf"], "memory_budget_mb must be a finite number"),
])
def test_train_refuses_non_finite_and_out_of_range_flags(tmp_path, capsys, flags, fragment):
    traj = tmp_path / "missing.nc"  # never read: the settings are checked first
    assert main(["train", str(traj), "--out", str(tmp_path / "r"), "--quiet", *flags]) == 2
    assert fragment in _err(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("toml,fragment", [
    ("steps = true", "steps must be a whole number (got True)"),
    ("steps = 10.0", "steps must be a whole number (got 10.0)"),
    ("lr = 'fast'", "lr must be a number (got 'fast')"),
    ("rotate = 1", "rotate must be true or false"),
    ("optimizer = 'sgd'", "optimizer must be one of adamw, radam"),
    ("sigmas = []", "sigmas must be a non-empty list"),
    ("lr = nan", "lr must be a finite number"),
])
def test_train_config_file_uses_strict_types(tmp_path, capsys, toml, fragment):
    cfg = tmp_path / "t.toml"
    cfg.write_text(f"[train]\n{toml}\n")
    assert main(["train", str(tmp_path / "x.nc"), "--out", str(tmp_path / "r"), "--config",
                 str(cfg), "--quiet"]) == 2
    assert fragment in _err(capsys)


def test_train_config_api_refuses_nan():
    from scoremodels.train import TrainConfig

    with pytest.raises(simcore.UserInputError, match="lr must be a finite number"):
        TrainConfig(lr=float("nan"))
    assert TrainConfig(lr=1).lr == 1  # an int is a fine float


@pytest.mark.parametrize("flags,fragment", [
    (["--burn-in", "nan"], "burn_in must be a finite number"),
    (["--burn-in", "1"], "burn_in must be < 1"),
    (["--stride", "0"], "stride must be >= 1"),
    (["--memory-budget", "nan"], "memory_budget_mb must be a finite number"),
    (["--batch-particles", "0"], "batch_particles must be >= 1"),
])
def test_epr_refuses_bad_options(tmp_path, capsys, flags, fragment):
    assert main(["epr", str(tmp_path / "run"), str(tmp_path / "x.nc"), "-o",
                 str(tmp_path / "e.nc"), "--quiet", *flags]) == 2
    assert fragment in _err(capsys)


def _edit_record(run, fn):
    path = run / "run.json"
    record = json.loads(path.read_text())
    fn(record)
    path.write_text(json.dumps(record))


def _truncate_arrays(run):
    for f in (run / "checkpoints").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:20])


def _garbage_metadata(run):
    for f in (run / "checkpoints").rglob("_*METADATA"):
        f.write_text("garbage")


def _checkpoints_a_file(run):
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("x")


DAMAGE = {
    "not_json": (lambda run: (run / "run.json").write_text("{not json"), "is not valid JSON"),
    "not_object": (lambda run: (run / "run.json").write_text("[1, 2]"),
                   "does not hold a JSON object"),
    "missing_net": (lambda run: _edit_record(run, lambda r: r.pop("net")), "lacks net"),
    "bad_lr": (lambda run: _edit_record(run, lambda r: r["train"].update(lr="fast")),
               "holds invalid values (Bad training settings: lr must be a number"),
    "unknown_net_key": (lambda run: _edit_record(run, lambda r: r["net"].update(bogus=1)),
                        "describes no valid network"),
    "other_width": (lambda run: _edit_record(run, lambda r: r["net"].update(width=17)),
                    "cannot be restored"),
    "truncated_arrays": (_truncate_arrays, "cannot be restored"),
    "garbage_metadata": (_garbage_metadata, "cannot be restored"),
    "checkpoints_a_file": (_checkpoints_a_file, "is a file, not the folder"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["epr", "resume"])
def test_damaged_run_directory_exits_2(trained, tmp_path, capsys, damage, command):
    traj, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    make, fragment = DAMAGE[damage]
    make(copy)
    if command == "epr":
        args = ["epr", str(copy), str(traj), "-o", str(tmp_path / "e.nc"), "--quiet"]
    else:
        args = ["train", str(traj), "--out", str(copy), "--resume", "--steps", "6", "--quiet"]
    assert main(args) == 2
    err = _err(capsys)
    assert fragment in err and ("--overwrite" in err or "earlier checkpoint" in err)
    assert not (tmp_path / "e.nc").exists()


def test_resume_with_other_settings_or_data_is_refused(trained, tmp_path, capsys):
    """--resume used the saved settings and trajectories whatever was given, silently;
    other values are now refused (the run directory untouched), while more --steps and
    another --memory-budget continue it."""
    traj, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    other = tmp_path / "other.nc"
    shutil.copy(traj, other)
    base = ["train", "--out", str(copy), "--resume", "--quiet", "--size", "tiny"]
    before = sorted(p.name for p in copy.rglob("*"))
    assert main([*base[:1], str(traj), *base[1:], "--batch-size", "64", "--lr", "0.05"]) == 2
    err = _err(capsys)
    assert "these differ: batch_size (64; the run has 16); lr (0.05; the run has 0.001)" in err
    assert main([*base[:1], str(other), *base[1:]]) == 2
    assert "the trajectories (the run was trained on" in _err(capsys)
    assert sorted(p.name for p in copy.rglob("*")) == before
    assert main([*base[:1], str(traj), *base[1:], "--steps", "6", "--memory-budget", "0.1"]) == 0


def test_damaged_checkpoint_on_the_command_line_prints_one_paragraph(trained, tmp_path):
    """The real command: no orbax/tensorstore reports after the paragraph either."""
    import subprocess
    import sys

    traj, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _truncate_arrays(copy)
    proc = subprocess.run([sys.executable, "-m", "scoremodels", "epr", str(copy), str(traj),
                           "-o", str(tmp_path / "e.nc"), "--quiet"], capture_output=True,
                          text=True, timeout=300)
    assert_one_paragraph(proc)
    assert "Exception ignored" not in proc.stderr
    assert proc.stderr.startswith("scoremodels epr: error: The checkpoint at step 4")


def test_epr_checks_memory_up_front(trained, tmp_path, capsys, monkeypatch):
    from simcore import _memory

    traj, run = trained
    monkeypatch.delenv(_memory.SKIP_ENV, raising=False)
    monkeypatch.setattr(_memory, "available_bytes", lambda: 2 ** 20)
    out = tmp_path / "e.nc"
    assert main(["epr", str(run), str(traj), "-o", str(out), "--quiet", "--grid", "4"]) == 2
    err = _err(capsys)
    assert "scoremodels epr of 32 particles" in err and "needs about" in err
    assert "only 1.0 MiB is available" in err and "--batch-particles" in err
    assert not out.exists() and not (tmp_path / "e.nc.part").exists()
    monkeypatch.setenv(_memory.SKIP_ENV, "1")
    assert main(["epr", str(run), str(traj), "-o", str(out), "--quiet", "--grid", "4"]) == 0


def test_epr_estimate_grows_with_the_batch():
    from simcore import _memory

    def est(batch):
        return _memory.epr_bytes(10_000, 10 ** 6, 4, 3, 16, 64, 2, batch)

    per_particle = est(2) - est(1)
    assert per_particle > 0
    assert est(8192) - est(256) == (8192 - 256) * per_particle
    assert est(1) > 5 * 10 ** 6  # the frames read at once count


def test_train_out_is_an_existing_file(trained, tmp_path, capsys):
    traj, _ = trained
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["train", str(traj), "--out", str(f), "--quiet", "--size", "tiny",
                 "--steps", "2"]) == 2
    assert "is an existing file" in _err(capsys)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_epr_output_that_cannot_be_written(trained, tmp_path, capsys):
    traj, run = trained
    assert main(["epr", str(run), str(traj), "-o", "/proc/e.nc", "--quiet"]) == 2
    err = _err(capsys)
    assert "Cannot write /proc/e.nc" in err and "full" not in err
    (tmp_path / "d").mkdir()
    for overwrite in ([], ["--overwrite"]):  # "pass --overwrite" would mislead
        assert main(["epr", str(run), str(traj), "-o", str(tmp_path / "d"), "--quiet",
                     *overwrite]) == 2
        assert "is a folder" in _err(capsys)


def test_epr_output_that_is_its_input_is_refused(trained, tmp_path, capsys):
    """-o naming the trajectory, with --overwrite, replaced it with the EPR file."""
    traj, run = trained
    copy = tmp_path / "abp.nc"
    copy.write_bytes(traj.read_bytes())
    assert main(["epr", str(run), str(copy), "-o", str(copy), "--overwrite", "--quiet"]) == 2
    assert "is the input" in _err(capsys)
    assert copy.read_bytes() == traj.read_bytes()


def test_epr_output_on_a_full_disk(trained, tiny_fs):
    import subprocess
    import sys

    traj, run = trained
    # in a subprocess: the netCDF handle of a failed write must not outlive the test
    proc = subprocess.run([sys.executable, "-m", "scoremodels", "epr", str(run), str(traj),
                           "-o", str(tiny_fs / "e.nc"), "--quiet", "--grid", "4"],
                          capture_output=True, text=True, timeout=300)
    assert_one_paragraph(proc, f"Writing {tiny_fs / 'e.nc'} failed", "the disk is full")
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["fill"]


def test_every_option_is_described_with_its_default():
    """`scoremodels train/epr --help`: every argument has a help text, and every optional
    one that takes a value states its default (from TrainConfig / estimate's signature)."""
    import argparse

    from scoremodels.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("train", "epr"):
        parser = sub.choices[name]
        assert parser.description
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = action.option_strings or action.dest
            assert action.help and len(action.help) > 10, (name, label)
            takes_value = action.nargs != 0 and action.option_strings and not action.required
            if takes_value and action.dest != "config":
                assert "default" in action.help, (name, label, action.help)
        text = parser.format_help()
        assert "%(default)" not in text and "(default: None)" not in text


def test_version_names_the_package(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"scoremodels (simcore {simcore.__version__})"


def test_train_run_directory_that_cannot_be_made_or_filled(trained, tmp_path, tiny_fs,
                                                           read_only_fs, capsys):
    """A path through a file, a read-only file system (tracebacks before) and a full disk
    (a traceback from the metrics file, or orbax's RESOURCE_EXHAUSTED): exit 2, one
    paragraph each. The full disk runs as the real command in its own process (orbax's
    background writers fail there, not in the caller); the two paths refused before
    training starts run in this one."""
    import subprocess
    import sys

    traj, _ = trained
    common = ["--size", "tiny", "--steps", "4", "--batch-size", "16", "--quiet"]
    for out, fragment in ((traj / "sub", "Not a directory"),
                          (read_only_fs / "run", "Read-only file system")):
        assert main(["train", str(traj), "--out", str(out), *common]) == 2
        assert fragment in " ".join(_err(capsys).split())
    proc = subprocess.run([sys.executable, "-m", "scoremodels", "train", str(traj),
                           "--out", str(tiny_fs / "run"), *common],
                          capture_output=True, text=True, timeout=300)
    assert_one_paragraph(proc, "the disk is full")


@pytest.mark.parametrize("minutes", ["-1", "nan"])
def test_train_max_minutes_must_be_a_duration(trained, tmp_path, capsys, minutes):
    """A negative or NaN budget trained 0 steps and wrote an untrained network (exit 0)."""
    traj, _ = trained
    assert main(["train", str(traj), "--out", str(tmp_path / "r"), "--max-minutes", minutes,
                 "--quiet"]) == 2
    assert "--max-minutes must be a number of minutes >= 0" in _err(capsys)
    assert not (tmp_path / "r").exists()
