"""examples/epr_map.py --quick: the train-small / infer-large EPR map pipeline runs end
to end (simulate, train, batched inference in a child process, figure)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("epr_map", ROOT / "examples" / "epr_map.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``--quick`` run (simulate, train, infer, figure), shared by the tests here."""
    folder = tmp_path_factory.mktemp("epr_map")
    mod = _load()
    s = mod.main(["--quick", "--out", str(folder / "out"), "--figure", str(folder / "map.png")])
    return folder, s


def test_epr_map_quick(quick):
    folder, s = quick
    fig = folder / "map.png"
    assert fig.exists() and fig.stat().st_size > 10_000
    saved = json.loads((folder / "out" / "summary.json").read_text())
    assert saved["n_infer"] == 1024 and saved["n_train"] == 256
    # the network trained on N = 256 ran on the N = 1024 file, in batches of 256
    assert saved["batch_particles"] == 256
    assert math.isfinite(s["epr_total"]) and s["epr_total"] >= 0
    assert set(s["epr_class_mean_last_frame"]) == {"dense", "interface", "dilute"}
    assert abs(sum(s["class_fraction_last_frame"]) - 1) < 1e-9
    assert s["inference"]["peak_rss_mib"] > 0


@pytest.mark.slow  # 30 s: its own training, calibration and inference
def test_epr_map_long_mode_on_given_trajectories(quick, tmp_path):
    """--long with --train-traj / --infer-traj: no simulation, training steps calibrated to
    the budget (the wall-clock cap stops it, checkpointed), the exact local reference in
    the summary; a missing trajectory is refused."""
    folder, _ = quick
    mod = _load()
    mod.NET_LONG_CPU = dict(mod.NET, batch_size=64)  # a tiny network keeps the test fast
    mod.NET_LONG = mod.NET_LONG_CPU
    out = tmp_path / "long"
    s = mod.main(["--long", "--train-traj", str(folder / "out" / "train.nc"),
                  "--infer-traj", str(folder / "out" / "infer.nc"), "--train-minutes", "0.05",
                  "--batch-particles", "256", "--memory-budget", "16", "--out", str(out)])
    assert s["mode"] == "long" and "sim_train_s" not in s and s["train_steps"] >= 100
    assert s["train_steps_per_s"] > 0 and (out / "epr_map.png").exists()
    assert (out / "run" / "checkpoints").is_dir()
    ref = s["exact_local_class_mean_last_frame"]
    assert set(ref) == {"dense", "interface", "dilute"}
    assert math.isfinite(s["exact_local_mean_last_frame"])
    with pytest.raises(SystemExit, match="does not exist"):
        mod.main(["--long", "--train-traj", str(tmp_path / "missing.nc"), "--out",
                  str(tmp_path / "x")])
