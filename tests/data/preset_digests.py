"""Print a SHA-256 digest of every variable of a short seeded run of every preset.

Run it on two checkouts and compare the output to check that a change keeps seeded
trajectories bit-identical (e.g. a refactor or a new store):

    python tests/data/preset_digests.py > after.json   # in each checkout, then diff

Sizes are cut so that the whole list runs in a few minutes: n <= 300 (hard discs 500),
3 frames.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import netCDF4
import numpy as np

import simcore
from simcore.config import presets
from simcore.models import model_names


def digests(path: Path) -> dict[str, str]:
    out = {}
    with netCDF4.Dataset(path) as ds:
        for name, v in sorted(ds.variables.items()):
            if name.startswith("simcore_state_"):
                continue  # the stored final state is new; the frames are what is compared
            v.set_auto_maskandscale(False)
            out[name] = hashlib.sha256(np.ascontiguousarray(v[:]).tobytes()).hexdigest()[:16]
    return out


def main() -> int:
    result = {}
    folder = Path(tempfile.mkdtemp(prefix="simcore-digests-"))
    for model in model_names():
        for preset, params in presets(model).items():
            over = {}
            if hasattr(params, "n"):
                over["n"] = min(params.n, 500 if model == "harddisc" else 300)
            if model == "harddisc":
                kw = dict(overrides={**over, "t_end": 3 * params.frame_dt})
            else:
                kw = dict(overrides=over, steps=30, write_every=10)
            out = folder / f"{model}-{preset}.nc"
            try:
                simcore.run(model, preset=preset, out=out, seed=7, quiet=True, **kw)
                result[f"{model}/{preset}"] = digests(out)
            except simcore.UserInputError as err:
                result[f"{model}/{preset}"] = f"refused: {err}"
            print(f"{model}/{preset} done", file=sys.stderr)
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
