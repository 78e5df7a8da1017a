"""The example scripts' ``--quick`` modes run end to end and write their data and figure."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, out: Path, *extra: str, limit: float = 90.0):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", "--out", str(out),
                           *extra], capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert wall < limit, f"{name} --quick took {wall:.0f} s"
    return proc


def is_png(path: Path) -> bool:
    return path.read_bytes()[:4] == b"\x89PNG"


def test_couzin_phase_diagram_quick(tmp_path):
    proc = run_example("couzin_phase_diagram.py", tmp_path)
    assert is_png(tmp_path / "couzin_phase_diagram.png")
    with xr.open_dataset(tmp_path / "hysteresis.nc") as hyst:
        assert hyst["milling"].dims == ("replica", "direction", "delta_r_o")
        assert list(hyst["direction"].values) == ["increasing", "decreasing"]
        values = hyst[["polarization", "milling"]].to_array().values
        assert np.all((values >= 0) & (values <= 1))
        # the highly parallel end is reached from both sides
        assert float(hyst["polarization"].isel(delta_r_o=-1).min()) > 0.8
    with xr.open_dataset(tmp_path / "regimes_indices.nc") as ind:
        assert ind["osi"].dims[:2] == ("preset", "replica") and ind.sizes["preset"] == 4
    assert "highly_parallel" in proc.stdout
    # outputs are never overwritten silently
    again = subprocess.run([sys.executable, str(EXAMPLES / "couzin_phase_diagram.py"),
                            "--quick", "--out", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_mips_phase_diagram_quick(tmp_path):
    run_example("mips_phase_diagram.py", tmp_path)
    assert is_png(tmp_path / "mips_phase_diagram.png")
    with xr.open_dataset(tmp_path / "mips_diagnostics.nc") as diag:
        assert diag["mips"].dims == ("phi", "v0", "replica")
        assert diag["largest_cluster_fraction"].shape == (2, 2, 1)
        assert diag["Pe"].values.tolist() == pytest.approx([10.0, 150.0])
    assert (tmp_path / "mips_sweep" / "manifest.json").exists()


def test_dask_sweep_quick(tmp_path):
    proc = run_example("dask_sweep.py", tmp_path)
    assert is_png(tmp_path / "dask_sweep.png")
    assert "on the dask backend" in proc.stderr
    with xr.open_dataset(tmp_path / "order.nc") as order:
        assert order["polarization_mean"].dims == ("r_o", "noise", "field_of_view", "replica")
        assert order["polarization"].sizes["time"] == 16
        assert np.all((order["polarization"] >= 0) & (order["polarization"] <= 1 + 1e-9))
