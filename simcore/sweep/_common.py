"""What every part of a sweep shares: file names, states, the failure report."""

from __future__ import annotations

from pathlib import Path


MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
BACKENDS = ("serial", "processes", "dask")
JOB_SCHEDULERS = ("slurm", "pbs")
STATES = ("pending", "running", "done", "failed")
_TOP_KEYS = {"model", "preset", "config", "out", "seed", "seeds_per_point", "params", "grid",
             "zip", "points", "description"}
CLUSTER_HINT = "pip install 'simcore[cluster]'"


class SweepFailed(RuntimeError):
    """Some runs of a sweep failed (the others finished); ``failures`` maps file to error."""

    def __init__(self, folder: Path, failures: dict[str, str], n_runs: int | None = None):
        self.folder = Path(folder)
        self.failures = dict(failures)
        # each error's last line, without its full stop: they are joined into one sentence
        listed = "; ".join(
            f"{name}: {err.strip().splitlines()[-1].rstrip('.') if err.strip() else '?'}"
            for name, err in list(self.failures.items())[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        others = ("None of its runs finished." if n_runs == len(self.failures)
                  else "The other runs finished.")
        super().__init__(
            f"{len(self.failures)} run(s) of the sweep in {self.folder} failed: {listed}{more}. "
            f"{others} Errors are in {self.folder / MANIFEST}; fix the cause and "
            "run the same sweep again to retry only these runs."
        )
