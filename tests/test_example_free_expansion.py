"""examples/free_expansion.py --quick runs end to end and writes its data and figure."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

from conftest import assert_one_paragraph

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "free_expansion.py"


def test_free_expansion_quick(tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert wall < 90, f"free_expansion.py --quick took {wall:.0f} s"
    assert (tmp_path / "free_expansion.png").read_bytes()[:4] == b"\x89PNG"
    for preset, lam in (("knudsen", 0.5), ("hydro", None)):
        assert (tmp_path / f"{preset}.nc").exists()
        with xr.open_dataset(tmp_path / f"{preset}_entropy.nc") as ent:
            assert ent["delta_s_stirling"].dims == ("dv", "time")
            assert ent["dv"].values.tolist() == [0.25, 0.5, 1.0]
            if lam is not None:
                assert math.isclose(float(ent.attrs["lambda_over_L"]), lam, rel_tol=0.02)
            ds = ent["delta_s_stirling"].values
            # starts at 0, ends near the same-cell equilibrium reference (below ln 2)
            assert np.all(ds[:, 0] == 0.0)
            ref = ent["delta_s_eq_stirling"].values
            assert np.all(ref < math.log(2)) and np.all(ref > 0.3)
            assert np.all(abs(ds[:, -1] - ref) < 0.1), (preset, ds[:, -1], ref)
            # the t/L range of the presets: about 3-4 L
            assert 2.5 < float(ent["time"][-1]) / float(ent.attrs["L"]) < 5
    # the two regimes differ: the hydrodynamic gas stays nearly flat while the rarefaction
    # wave crosses the box (t ≲ 0.35-0.5 L), the Knudsen gas does not
    with xr.open_dataset(tmp_path / "knudsen_entropy.nc") as k, \
            xr.open_dataset(tmp_path / "hydro_entropy.nc") as h:
        pick = lambda e: e["delta_s_stirling"].sel(dv=0.25).values[  # noqa: E731
            int(np.argmin(abs(e["time"].values / e.attrs["L"] - 0.5)))]
        assert pick(h) < pick(k)
    assert "ΔS_B/N" in proc.stdout and "free_expansion.png" in proc.stdout
    # outputs are never overwritten silently
    again = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_free_expansion_refuses_a_tiny_n(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--n", "50", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert_one_paragraph(proc, "--n must be at least 100")
    assert not any(tmp_path.iterdir())


def test_scaled_regimes_keep_knudsen_lambda_and_hydro_phi():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import free_expansion as fe
    finally:
        sys.path.pop(0)
    from simcore.models import harddisc as hd

    assert fe.regime_params("knudsen", None) == {}
    for n in (4000, 160000):
        for preset in ("knudsen", "hydro"):
            base = hd.Params(**hd.PRESETS[preset])
            scaled = base.model_copy(update=fe.regime_params(preset, n))
            assert scaled.n == n
            # same t/L range and frame count as the preset (frame_dt rounded to 0.1)
            frames = round(base.t_end / base.frame_dt)
            assert round(scaled.t_end / scaled.frame_dt) == frames
            assert abs(scaled.t_end / scaled.L - base.t_end / base.L) < 0.05 * frames / scaled.L
            if preset == "knudsen":
                lam = hd.mean_free_path(scaled) / scaled.L
                assert math.isclose(lam, hd.mean_free_path(base) / base.L, rel_tol=0.02)
            else:
                assert scaled.phi == base.phi
