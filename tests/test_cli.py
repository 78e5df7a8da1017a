"""The ``simcore`` command end to end: success paths and bad input (exit 2, one paragraph).

The success paths and two refusals run the real command in its own process; the other
refusals call its main() in the test's process (:func:`conftest.run_cli_here`)."""

from __future__ import annotations

import resource
import subprocess
import sys

import netCDF4
import pytest
import xarray as xr

from conftest import assert_one_paragraph, run_cli, run_cli_here


def test_presets_lists_every_couzin_preset():
    proc = run_cli("presets", "couzin", check_rc=0)
    for name in ("swarm", "torus", "dynamic_parallel", "highly_parallel", "dewi_swarm",
                 "dewi_torus", "dewi_dynamic_parallel", "dewi_highly_parallel"):
        assert f"  {name}:" in proc.stdout


def test_run_analyze_info_plot(tmp_path, capsys, small_couzin_run):
    out = tmp_path / "ind.nc"
    proc = run_cli("analyze", small_couzin_run, "-o", out, check_rc=0)
    assert "polarization" in proc.stdout
    ind = xr.open_dataset(out)
    assert ind.sizes["time"] == 7 and "osi" in ind and ind.attrs["convention"] == "corrected"
    ind.close()
    assert_one_paragraph(run_cli_here(capsys, "analyze", small_couzin_run, "--convention", "dewi"),
                         "periodic")
    proc = run_cli("info", small_couzin_run, check_rc=0)
    assert "model:      couzin (preset dynamic_parallel)" in proc.stdout
    png = tmp_path / "fig.png"
    run_cli("plot", small_couzin_run, "-o", png, check_rc=0)
    assert png.read_bytes()[:4] == b"\x89PNG"
    gif = tmp_path / "anim.gif"
    run_cli("plot", small_couzin_run, "--animate", "-o", gif, check_rc=0)
    assert gif.read_bytes()[:3] == b"GIF"
    assert_one_paragraph(run_cli_here(capsys, "plot", small_couzin_run, "-o", png), "already exists")


def test_amber_format_is_netcdf3(tmp_path):
    out = tmp_path / "a.nc"
    run_cli("run", "couzin", "--preset", "swarm", "--steps", "20", "--set", "n=10",
            "--format", "amber", "--quiet", "-o", out, check_rc=0)
    with netCDF4.Dataset(out) as nc:
        assert nc.file_format == "NETCDF3_64BIT_OFFSET"
    xr.open_dataset(out).close()


@pytest.mark.parametrize("args,fragments", [
    (["--set", "n=-1"], ["n: Input should be greater than or equal to 1"]),
    (["--set", "speeed=3"], ["speeed: unknown parameter", "Valid parameters are"]),
    (["--set", "r_o=0.5"], ["r_r <= r_o <= r_a"]),
    (["--preset", "mill"], ["Unknown preset 'mill'"]),
    (["--set", "boundary=periodic"], ["needs a box side > 0"]),
    (["--steps", "-5"], ["steps: Input should be greater than or equal to 0"]),
    (["--threads", "999"], ["--threads must be between 1"]),
])
def test_bad_run_input_exits_2(tmp_path, capsys, args, fragments):
    proc = run_cli_here(capsys, "run", "couzin", *args,
                        "--steps" if "--steps" not in args else "--quiet",
                        *(["10"] if "--steps" not in args else []), "-o", tmp_path / "x.nc")
    assert_one_paragraph(proc, *fragments)
    assert not (tmp_path / "x.nc").exists()


def test_bad_config_files_exit_2(tmp_path, capsys):
    def run(config):
        return run_cli_here(capsys, "run", "couzin", "--config", config, "-o", tmp_path / "x.nc")

    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("n = = 3\n")
    assert_one_paragraph(run(bad_toml), "is not valid TOML")
    typo = tmp_path / "typo.toml"
    typo.write_text('preset = "swarm"\n[params]\nnoize = 0.1\n')
    assert_one_paragraph(run(typo), "noize: unknown parameter")
    other = tmp_path / "other.toml"
    other.write_text('model = "abp"\n')
    assert_one_paragraph(run(other), "is for model 'abp'")
    assert_one_paragraph(run(tmp_path / "none.toml"), "does not exist")


def test_unknown_model_and_missing_output_folder(tmp_path):
    proc = run_cli("run", "fish", "-o", tmp_path / "x.nc")
    assert_one_paragraph(proc, "Unknown model 'fish'")
    proc = run_cli("run", "couzin", "--steps", "5", "-o", tmp_path / "missing" / "x.nc")
    assert_one_paragraph(proc, "does not exist")


def test_existing_output_is_never_overwritten(tmp_path, small_couzin_run):
    before = small_couzin_run.read_bytes()
    proc = run_cli("run", "couzin", "--steps", "5", "-o", small_couzin_run)
    assert_one_paragraph(proc, "already exists", "--overwrite")
    assert small_couzin_run.read_bytes() == before


def test_bad_files_for_analyze_info_plot(tmp_path, capsys):
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"\x00garbage" * 10)
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("x", [1, 2])}).to_netcdf(foreign)
    for cmd in ("analyze", "info", "plot"):
        assert_one_paragraph(run_cli_here(capsys, cmd, junk), "Cannot read")
        assert_one_paragraph(run_cli_here(capsys, cmd, foreign), "not a simcore trajectory")
        assert_one_paragraph(run_cli_here(capsys, cmd, tmp_path / "missing.nc"), "does not exist")


@pytest.mark.parametrize("fmt", ["netcdf4", "amber"])
def test_full_disk_exits_2_and_keeps_the_checkpoint(tmp_path, fmt):
    """A file-size limit makes writes fail like a full disk does (EFBIG instead of ENOSPC)."""
    out = tmp_path / "big.nc"
    cmd = [sys.executable, "-m", "simcore.cli", "run", "couzin", "--preset", "swarm",
           "--steps", "3000", "--write-every", "1", "--set", "n=300", "--set",
           "checkpoint_every=5", "--format", fmt, "--quiet", "-o", str(out)]

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    proc = subprocess.run(cmd, preexec_fn=limit, capture_output=True, text=True, timeout=600)
    assert_one_paragraph(proc, "failed", "disk is full", "--resume")
    assert not out.exists()
    assert out.with_name("big.nc.ckpt").exists()


def test_dewi_preset_and_dewi_convention(tmp_path):
    out = tmp_path / "d.nc"
    proc = run_cli("run", "couzin", "--preset", "dewi_highly_parallel", "--steps", "30",
                   "--quiet", "-o", out, check_rc=0)
    assert "exceeds half the periodic box" in proc.stderr  # r_a = 20 > 35 / 2
    proc = run_cli("analyze", out, "--convention", "dewi", check_rc=0)
    assert "osi" in proc.stdout
