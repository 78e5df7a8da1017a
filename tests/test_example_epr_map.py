"""examples/epr_map.py --quick: the train-small / infer-large EPR map pipeline runs end
to end (simulate, train, batched inference in a child process, figure)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("epr_map", ROOT / "examples" / "epr_map.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_epr_map_quick(tmp_path):
    mod = _load()
    fig = tmp_path / "map.png"
    s = mod.main(["--quick", "--out", str(tmp_path / "out"), "--figure", str(fig)])
    assert fig.exists() and fig.stat().st_size > 10_000
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["n_infer"] == 1024 and saved["n_train"] == 256
    # the network trained on N = 256 ran on the N = 1024 file, in batches of 256
    assert saved["batch_particles"] == 256
    assert math.isfinite(s["epr_total"]) and s["epr_total"] >= 0
    assert set(s["epr_class_mean_last_frame"]) == {"dense", "interface", "dilute"}
    assert abs(sum(s["class_fraction_last_frame"]) - 1) < 1e-9
    assert s["inference"]["peak_rss_mib"] > 0
