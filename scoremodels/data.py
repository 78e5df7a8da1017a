"""Training data from simcore trajectories: chunk-wise frame reading under a memory budget,
per-particle neighbourhoods from cell lists, time-block train/validation splits and
shuffled batches across frames.

Everything here is NumPy/Numba (no JAX), so the data pipeline can be tested alone.

Sample layout (one row per particle of a frame, float32; see :class:`Adapter`):

``y``        (S,)    the particle's own state in *score coordinates*: for active particles
                     ``[u_x, u_y, p...]`` where ``u`` is a displacement of the particle from
                     its stored position (always 0 in the data; the network reads
                     neighbour displacements as ``rel - u``, so ∂/∂u = ∂/∂x_i) and ``p`` is
                     θ (ABP, radian) or g (AOUP, 2 components); for the ``linear`` model
                     the copy's d-vector x.
``drift``    (S,)    deterministic drift b in the same coordinates (b_x = v0 p + μF,
                     b_θ = 0, b_g = −γ g; linear: −B x).
``pos``      (2,)    position relative to the box centre (used only by networks that
                     see absolute positions: trapped systems, per-particle MLPs).
``nb_rel``   (K, 2)  minimum-image displacements x_j − x_i of the neighbours (length
                     units of the model), nearest first, zero-padded.
``nb_p``     (K, P)  the neighbours' propulsion state (θ or g), zero-padded.
``nb_mask``  (K,)    1 for a real neighbour, 0 for padding.
``nb_bx``    (K, 2)  the neighbours' position drift b_x = v0 g + μF (AOUP only; the
                     pinned g-score network reads their force-balance residuals).
``divb``     ()      ∇_y·b over the score dimensions (only filled for EPR inference).

Memory: :class:`TrajectorySet` reads frames with netCDF4 slicing (HDF5 reads only the
chunks it needs) and :class:`BatchStream` never holds more frames (raw + neighbourhoods)
than ``memory_budget`` bytes allows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from numba import njit

from simcore._errors import UserInputError
from simcore.neighbors import build_grid2d, grid2d_shape, neighbor_cell
from scoremodels import network
from scoremodels.adapters import STATE_VECTORS, Adapter

DEFAULT_BUDGET = 512 * 2 ** 20  # bytes


def _fail_open(path, exc) -> UserInputError:
    return UserInputError(f"Cannot read {path} as a NetCDF trajectory "
                          f"({getattr(exc, 'strerror', None) or exc}).")


# ---------------------------------------------------------------------------- reading
class TrajectorySet:
    """Frames of one or more simcore trajectories of the same model, read on demand.

    ``frames`` is the list of (file index, frame index) of all frames in order; a read
    of k frames touches only those frames' HDF5 chunks. ``reads`` records the number of
    frames of every read (tests use it to check the memory budget).
    """

    def __init__(self, paths, linear_variable: str = "x"):
        import netCDF4

        self.paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
        if not self.paths:
            raise UserInputError("No trajectory given.")
        self._handles = []
        self.frames: list[tuple[int, int]] = []
        self.reads: list[int] = []
        self.adapter: Adapter | None = None
        self.linear_variable = linear_variable
        try:  # a refused file closes the ones opened before it
            for fi, path in enumerate(self.paths):
                if not path.exists():
                    raise UserInputError(f"The trajectory {path} does not exist.")
                try:
                    h = netCDF4.Dataset(path, "r")
                except OSError as exc:
                    raise _fail_open(path, exc) from None
                h.set_auto_mask(False)
                self._handles.append(h)
                attrs = {k: h.getncattr(k) for k in h.ncattrs()}
                if attrs.get("program") != "simcore" or "run_parameters" not in attrs:
                    raise UserInputError(f"{path} is not a simcore trajectory (no run_parameters "
                                         "attribute); scoremodels reads simcore files only.")
                record = json.loads(attrs["run_parameters"])
                adapter = self._adapter(record, h, path)
                if self.adapter is None:
                    self.adapter = adapter
                elif (adapter.layout, adapter.n_atoms, adapter.state_dim) != (
                        self.adapter.layout, self.adapter.n_atoms, self.adapter.state_dim):
                    raise UserInputError(f"{path} holds a different system ({adapter.layout}, "
                                         f"{adapter.n_atoms} atoms) from {self.paths[0]}; all "
                                         "trajectories must share model and particle number.")
                n = h.dimensions["frame"].size
                self.frames += [(fi, k) for k in range(n)]
            if not self.frames:
                raise UserInputError(f"{self.paths[0]} holds no frames.")
            self.time_per_frame = self._time_step()
        except BaseException:
            self.close()
            raise

    def _adapter(self, record, h, path) -> Adapter:
        from simcore.models import engine_names, get_engine

        model = record.get("model")
        try:
            adapter = get_engine(model).load("score_adapter")
        except KeyError:
            adapter = None
        if adapter is None:
            able = [name for name in engine_names() if get_engine(name).score_adapter]
            raise UserInputError(
                f"{path} is a {model!r} trajectory; scoremodels reads the files of "
                f"{', '.join(able)} only (the engines whose record names a score_adapter).")
        a, need, self.linear_variable = adapter(record, h, self.linear_variable)
        missing = [v for v in need if v not in h.variables]
        if missing:
            raise UserInputError(f"{path} lacks the variable(s) {missing} a {model} file "
                                 "should hold; was it written by another simcore version?")
        return a

    def _time_step(self) -> float:
        t = self._handles[0].variables["time"]
        return float(t[1] - t[0]) if t.shape[0] > 1 else 1.0

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def bytes_per_frame(self) -> int:
        """Float32 bytes of one frame's raw variables as held in memory."""
        a = self.adapter
        return 4 * a.n_atoms * (2 * a.state_dim + 2)

    def times(self, idx) -> np.ndarray:
        out = np.empty(len(idx))
        for m, g in enumerate(idx):
            fi, k = self.frames[g]
            out[m] = self._handles[fi].variables["time"][k]
        return out

    def read(self, idx) -> dict[str, np.ndarray]:
        """Frames ``idx`` (global indices) as float32 arrays ``pos`` (F, N, 2) (active,
        in [0, L)), ``prop`` (F, N, P), ``drift`` (F, N, S), or ``x`` and ``drift``
        (F, N, d) for the linear model. Consecutive indices of one file are read as one
        slice."""
        idx = np.asarray(idx, dtype=np.int64)
        self.reads.append(len(idx))
        a = self.adapter
        parts: dict[str, list] = {}
        order = np.argsort(idx, kind="stable")
        runs = []
        for g in idx[order]:
            fi, k = self.frames[g]
            if runs and runs[-1][0] == fi and runs[-1][2] == k:
                runs[-1][2] = k + 1
            else:
                runs.append([fi, k, k + 1])
        for fi, k0, k1 in runs:
            h = self._handles[fi]
            block = self._read_block(h, a, k0, k1)
            for key, v in block.items():
                parts.setdefault(key, []).append(v)
        out = {k: np.concatenate(v)[np.argsort(order, kind="stable")] for k, v in parts.items()}
        return out

    def _read_block(self, h, a: Adapter, k0: int, k1: int) -> dict[str, np.ndarray]:
        V = h.variables
        if a.layout in (STATE_VECTORS, network.LAYOUT):
            d = len(a.params["D"])
            x = np.asarray(V[self.linear_variable][k0:k1], dtype=np.float32)[..., :d]
            if "drift" in V and V["drift"].shape[-1] >= d:
                b = np.asarray(V["drift"][k0:k1], dtype=np.float32)[..., :d]
            else:
                B = np.asarray(a.params["B"], dtype=np.float32)
                b = -x @ B.T
            return {"x": x, "drift": b}
        pos = np.asarray(V["coordinates"][k0:k1, :, :2], dtype=np.float32)
        if a.prop_kind == "angle":
            p = np.asarray(V["theta"][k0:k1], dtype=np.float32)[..., None]
            bp = np.zeros_like(p)
        else:
            p = np.asarray(V["propulsion"][k0:k1, :, :2], dtype=np.float32)
            bp = -np.float32(a.params["gamma"]) * p
        dname = "drift" if "drift" in V else "velocities"
        bx = np.asarray(V[dname][k0:k1, :, :2], dtype=np.float32)
        return {"pos": pos, "prop": p, "drift": np.concatenate([bx, bp], axis=-1)}

    def close(self):
        for h in self._handles:
            try:
                h.close()
            except Exception:  # noqa: BLE001
                pass
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------- neighbourhoods
@njit(cache=True, inline="always")
def _insert(m, K, d2, j, rx, ry, bd, bj, brx, bry):
    """Insert candidate j (squared distance d2) into the sorted best-K list of length m."""
    if m == K and d2 >= bd[K - 1]:
        return m
    pos = m if m < K else K - 1
    while pos > 0 and bd[pos - 1] > d2:
        if pos < K:
            bd[pos], bj[pos], brx[pos], bry[pos] = bd[pos - 1], bj[pos - 1], brx[pos - 1], bry[pos - 1]
        pos -= 1
    bd[pos], bj[pos], brx[pos], bry[pos] = d2, j, rx, ry
    return min(m + 1, K)


@njit(cache=True)
def _knn_grid(pos, L, nc, side, cell_start, order, xs, ys, rc, idx, rel, count):
    """K nearest neighbours within rc of every particle, from an nc × nc periodic grid."""
    build_grid2d(pos, nc, side, cell_start, order, xs, ys)
    n = pos.shape[0]
    K = idx.shape[1]
    rc2 = rc * rc
    inv = 1.0 / side
    bd = np.empty(K)
    bj = np.empty(K, dtype=np.int64)
    brx = np.empty(K)
    bry = np.empty(K)
    for t in range(n):
        i = order[t]
        px, py = xs[t], ys[t]
        cx = min(max(int(px * inv), 0), nc - 1)
        cy = min(max(int(py * inv), 0), nc - 1)
        m = 0
        total = 0
        for oy in range(-1, 2):
            ry, sy = neighbor_cell(cy, oy, nc, L)
            for ox in range(-1, 2):
                rx, sx = neighbor_cell(cx, ox, nc, L)
                c = ry * nc + rx
                for u in range(cell_start[c], cell_start[c + 1]):
                    if u == t:
                        continue
                    dx = xs[u] + sx - px
                    dy = ys[u] + sy - py
                    d2 = dx * dx + dy * dy
                    if d2 < rc2:
                        total += 1
                        m = _insert(m, K, d2, order[u], dx, dy, bd, bj, brx, bry)
        _store_row(i, m, total, bj, brx, bry, idx, rel, count)


@njit(cache=True)
def _store_row(i, m, total, bj, brx, bry, idx, rel, count):
    """Write particle i's m nearest (index, displacement) and pad the row with -1 / 0."""
    for a in range(m):
        idx[i, a] = bj[a]
        rel[i, a, 0] = brx[a]
        rel[i, a, 1] = bry[a]
    for a in range(m, idx.shape[1]):
        idx[i, a] = -1
        rel[i, a, 0] = 0.0
        rel[i, a, 1] = 0.0
    count[i] = total


@njit(cache=True)
def _knn_brute(pos, L, rc, idx, rel, count):
    """The same from all pairs (boxes too small for a 3 × 3 grid; tests)."""
    n = pos.shape[0]
    K = idx.shape[1]
    rc2 = rc * rc
    bd = np.empty(K)
    bj = np.empty(K, dtype=np.int64)
    brx = np.empty(K)
    bry = np.empty(K)
    for i in range(n):
        m = 0
        total = 0
        for j in range(n):
            if j == i:
                continue
            dx = pos[j, 0] - pos[i, 0]
            dy = pos[j, 1] - pos[i, 1]
            dx -= L * np.round(dx / L)
            dy -= L * np.round(dy / L)
            d2 = dx * dx + dy * dy
            if d2 < rc2:
                total += 1
                m = _insert(m, K, d2, j, dx, dy, bd, bj, brx, bry)
        _store_row(i, m, total, bj, brx, bry, idx, rel, count)


def neighbourhoods(pos, L: float, k: int, cutoff: float | None = None):
    """Up to ``k`` nearest neighbours of each particle, nearest first.

    ``cutoff`` given: only neighbours closer than it (the envelope of the network fades
    them out smoothly towards it). ``cutoff`` None: the k nearest at any distance (the
    search radius grows until every particle has k, or all N − 1, neighbours).
    Built with a periodic cell grid (O(N k)); the all-pairs kernel serves boxes under
    three cells per side. Returns ``idx`` (N, k) int64 (−1 = padding), ``rel`` (N, k, 2)
    float64 minimum-image displacements x_j − x_i, ``count`` (N,) neighbours within the
    radius used (may exceed k).
    """
    pos = np.ascontiguousarray(np.asarray(pos, dtype=np.float64)[:, :2]) % L
    n = pos.shape[0]
    idx = np.empty((n, k), dtype=np.int64)
    rel = np.empty((n, k, 2))
    count = np.empty(n, dtype=np.int64)
    if cutoff is not None:
        radii = [float(cutoff)]
    else:
        r0 = 1.5 * math.sqrt(k / (math.pi * n / L ** 2))
        radii = [r0 * 1.6 ** m for m in range(12)]
    want = min(k, n - 1)
    for rc in radii:
        nc = grid2d_shape(L, rc)
        if nc:
            side = L / nc
            cell_start = np.empty(nc * nc + 1, dtype=np.int64)
            order = np.empty(n, dtype=np.int64)
            xs, ys = np.empty(n), np.empty(n)
            _knn_grid(pos, L, nc, side, cell_start, order, xs, ys, rc, idx, rel, count)
        else:
            _knn_brute(pos, L, min(rc, L), idx, rel, count)
        if cutoff is not None or count.min() >= want:
            break
        if not nc:  # all pairs within L already; take every particle
            _knn_brute(pos, L, 2 * L, idx, rel, count)
            break
    return idx, rel, count


def envelope(r, cutoff: float, width: float = 0.2):
    """Smooth cutoff weight: 1 for r < (1 − width)·cutoff, C² smoothstep to 0 at cutoff."""
    r_on = (1 - width) * cutoff
    t = np.clip((r - r_on) / (cutoff - r_on), 0.0, 1.0)
    return 1 - t ** 3 * (10 - 15 * t + 6 * t * t)


# ---------------------------------------------------------------------------- samples
def frame_samples(frames: dict, adapter: Adapter, k: int, cutoff: float | None,
                  particles: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Flatten frames into per-particle samples (see the module docstring).

    ``particles`` (optional, per frame the same index array) selects a subset."""
    a = adapter
    if a.layout == network.LAYOUT:
        return network.frame_samples(frames, a, k, particles)
    if a.layout == STATE_VECTORS:
        x, b = frames["x"], frames["drift"]
        if particles is not None:
            x, b = x[:, particles], b[:, particles]
        return {"y": x.reshape(-1, a.state_dim), "drift": b.reshape(-1, a.state_dim)}
    F, N = frames["pos"].shape[:2]
    sel = np.arange(N) if particles is None else np.asarray(particles)
    n = len(sel)
    P = a.prop_dim
    out = {"y": np.zeros((F, n, a.state_dim), np.float32),
           "drift": frames["drift"][:, sel].astype(np.float32),
           "pos": (frames["pos"][:, sel] - np.float32(a.box / 2)).astype(np.float32)}
    out["y"][..., 2:] = frames["prop"][:, sel]
    if a.local:
        out["nb_rel"] = np.zeros((F, n, k, 2), np.float32)
        out["nb_p"] = np.zeros((F, n, k, P), np.float32)
        out["nb_mask"] = np.zeros((F, n, k), np.float32)
        if a.prop_kind == "vector":
            out["nb_bx"] = np.zeros((F, n, k, 2), np.float32)
        for f in range(F):
            idx, rel, _ = neighbourhoods(frames["pos"][f], a.box, k, cutoff)
            idx, rel = idx[sel], rel[sel]
            valid = idx >= 0
            out["nb_rel"][f] = rel
            out["nb_p"][f] = frames["prop"][f][np.where(valid, idx, 0)] * valid[..., None]
            out["nb_mask"][f] = valid
            if "nb_bx" in out:
                out["nb_bx"][f] = frames["drift"][f][np.where(valid, idx, 0), :2] * valid[..., None]
    return {key: v.reshape(F * n, *v.shape[2:]) for key, v in out.items()}


def sample_bytes(adapter: Adapter, k: int) -> int:
    """Float32 bytes of one sample (one particle with its neighbourhood)."""
    per = 2 * adapter.state_dim + 2
    if adapter.local:
        per += k * (2 + adapter.prop_dim + 1 + (2 if adapter.prop_kind == "vector" else 0))
    if adapter.layout == network.LAYOUT:
        per += 4 * k + 4  # the stiffness blocks nb_hess and self_hess
    return 4 * per


# ---------------------------------------------------------------------------- splits, batches
def split_frames(n_frames: int, burn_in: float = 0.2, val_fraction: float = 0.1,
                 n_blocks: int = 10, stride: int = 1):
    """Train/validation frame indices by time blocks.

    The first ``burn_in`` fraction is dropped; the rest (every ``stride``-th frame) is
    cut into ``n_blocks`` contiguous blocks and ``round(val_fraction·n_blocks)`` of them,
    evenly spaced and including the last, are held out. Returns (train, val) arrays.
    """
    start = int(math.floor(burn_in * n_frames))
    frames = np.arange(start, n_frames, stride)
    if len(frames) < 2:
        raise UserInputError(f"Too few frames after the burn-in ({len(frames)} of {n_frames}); "
                             "lower --burn-in or write more frames.")
    n_blocks = max(2, min(n_blocks, len(frames)))
    blocks = np.array_split(frames, n_blocks)
    n_val = int(round(val_fraction * n_blocks))
    if n_val == 0:
        return frames, frames[:0]
    val_ids = set(np.linspace(n_blocks - 1, 0, n_val, endpoint=False).round().astype(int))
    train = np.concatenate([b for i, b in enumerate(blocks) if i not in val_ids])
    val = np.concatenate([b for i, b in enumerate(blocks) if i in val_ids])
    return train, val


class BatchStream:
    """Deterministic shuffled batches across frames, held within a memory budget.

    Chunk c holds ``frames_per_chunk`` training frames drawn without replacement by a
    generator seeded with (seed, c), with their neighbourhoods; its samples are shuffled
    and cut into ``steps_per_chunk`` batches. ``batch(step)`` is a pure function of
    (seed, step), so training resumed at any step sees the same batches.
    ``frames_per_chunk`` = min(training frames, budget / bytes per frame of samples).
    """

    def __init__(self, tset: TrajectorySet, frames: np.ndarray, batch_size: int, k: int,
                 cutoff: float | None, seed: int, memory_budget: int = DEFAULT_BUDGET,
                 particles_per_frame: int | None = None):
        self.tset, self.frames = tset, np.asarray(frames)
        self.batch_size, self.k, self.cutoff, self.seed = batch_size, k, cutoff, seed
        a = tset.adapter
        n = a.n_atoms if particles_per_frame is None else min(a.n_atoms, particles_per_frame)
        self.particles = n
        per_frame = tset.bytes_per_frame + a.n_atoms * sample_bytes(a, k)
        fit = max(1, int(memory_budget // per_frame))
        self.frames_per_chunk = int(min(len(self.frames), fit))
        n_samples = self.frames_per_chunk * n
        if n_samples < batch_size:
            raise UserInputError(
                f"A chunk of {self.frames_per_chunk} frames holds {n_samples} samples, fewer "
                f"than the batch size {batch_size}; raise --memory-budget or lower the batch.")
        self.steps_per_chunk = n_samples // batch_size
        self._cache: tuple[int, dict] | None = None

    def _chunk(self, c: int) -> dict:
        if self._cache is not None and self._cache[0] == c:
            return self._cache[1]
        self._cache = None
        g = np.random.default_rng([self.seed, c])
        chosen = np.sort(g.choice(len(self.frames), self.frames_per_chunk, replace=False))
        fr = self.frames[chosen]
        raw = self.tset.read(fr)
        a = self.tset.adapter
        parts = None
        if self.particles < a.n_atoms:
            parts = np.sort(g.choice(a.n_atoms, self.particles, replace=False))
        samples = frame_samples(raw, a, self.k, self.cutoff, parts)
        samples.update(self._extra_samples(fr, parts))
        perm = g.permutation(len(samples["y"]))
        samples = {key: v[perm] for key, v in samples.items()}
        self._cache = (c, samples)
        return samples

    def _extra_samples(self, frames, particles) -> dict[str, np.ndarray]:
        """Per-sample arrays a subclass adds to a chunk (frames: global indices)."""
        return {}

    def batch(self, step: int) -> dict[str, np.ndarray]:
        c, r = divmod(step, self.steps_per_chunk)
        s = self._chunk(c)
        sl = slice(r * self.batch_size, (r + 1) * self.batch_size)
        return {key: v[sl] for key, v in s.items()}


def fixed_samples(tset: TrajectorySet, frames: np.ndarray, max_samples: int, k: int,
                  cutoff: float | None, seed: int, memory_budget: int = DEFAULT_BUDGET):
    """A fixed validation set: up to ``max_samples`` particles spread over ``frames``
    (at most as many frames as the budget allows)."""
    if len(frames) == 0:
        return None
    a = tset.adapter
    per_frame = tset.bytes_per_frame + a.n_atoms * sample_bytes(a, k)
    n_fr = int(max(1, min(len(frames), memory_budget // per_frame, max_samples)))
    g = np.random.default_rng([seed, 99991])
    chosen = np.sort(g.choice(len(frames), n_fr, replace=False))
    per = max(1, min(a.n_atoms, max_samples // n_fr))
    parts = np.sort(g.choice(a.n_atoms, per, replace=False))
    raw = tset.read(frames[chosen])
    return frame_samples(raw, a, k, cutoff, parts)
