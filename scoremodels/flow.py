"""Model-free probability-flow targets from closely spaced frames (objective ``flow``).

For a stationary diffusion dX = b dt + √(2D) dW with every variable even under time
reversal, the forward and backward conditional increments over a short time h are

    E[X_{t+h} − X_t | X_t = y] = b(y) h + O(h²),
    E[X_t − X_{t−h} | X_t = y] = (b − 2D s)(y) h + O(h²)      (the time-reversed drift),

so the central difference regresses the probability-flow velocity v = b − D s,

    E[(X_{t+h} − X_{t−h}) / 2h | y] = v(y) + O(h),

and the backward difference E[(X_t − X_{t−h})/h | y] = b − 2Ds + O(h). Only the score
dimensions (the propulsion g of a hypoelliptic AOUP file: b_g = −γg, D_g = γ) are
regressed. Each sample carries the *score target*

    central:  ŝ = D⁻¹(b − (g_{t+h} − g_{t−h})/2h),
    backward: ŝ = D⁻¹(b − (g_t − g_{t−h})/h) / 2,

with E[ŝ | y] = s(y) + O(h); the loss is the least-squares regression |s(y) − ŝ|²/n, so
the network, its inputs and ``scoremodels epr`` are those of the score objectives. The
target is noisy: per component Var ŝ = 1/(γh) (central) or 1/(2γh) (backward; given
y_t the forward increment's mean b h is known, so the central difference's forward half
adds only noise), against a signal E|s − s_prior|² = Σ̇_g/γ per particle.

Frames are used where frames f − k and f + k (central) or f − k (backward) exist in the
same file; h is the time between them as written (``k`` = ``flow_step`` frames).
"""

from __future__ import annotations

import numpy as np

from simcore._errors import UserInputError
from scoremodels import data as sdata
from scoremodels import network

SCHEMES = ("central", "backward")


def usable_frames(tset: sdata.TrajectorySet, frames, k: int, scheme: str) -> np.ndarray:
    """The frames of ``frames`` (global indices) whose neighbours f − k (and f + k for
    the central scheme) lie in the same file."""
    fr = np.asarray(frames, dtype=np.int64)
    n = len(tset.frames)
    keep = []
    for g in fr:
        fi, kk = tset.frames[g]
        lo, hi = g - k, (g + k if scheme == "central" else g)
        if lo < 0 or hi >= n:
            continue
        if tset.frames[lo] == (fi, kk - k) and tset.frames[hi][0] == fi:
            keep.append(g)
    return np.asarray(keep, dtype=np.int64)


def flow_targets(tset: sdata.TrajectorySet, frames, k: int, scheme: str,
                 particles=None) -> np.ndarray:
    """Score targets ŝ (F·n, P) of the propulsion g for ``frames`` (see the module doc),
    float32, in the order of :func:`scoremodels.data.frame_samples`."""
    a = tset.adapter
    fr = np.asarray(frames, dtype=np.int64)
    lo = fr - k
    hi = fr + k if scheme == "central" else fr
    raw_lo, raw_hi, raw = tset.read(lo), tset.read(hi), tset.read(fr)
    dt = tset.times(hi) - tset.times(lo)
    gamma = float(a.params["gamma"])
    sel = slice(None) if particles is None else np.asarray(particles)
    g_lo = raw_lo["prop"][:, sel].astype(np.float64)
    g_hi = raw_hi["prop"][:, sel].astype(np.float64)
    b_g = raw["drift"][:, sel][..., 2:].astype(np.float64)
    rate = (g_hi - g_lo) / dt[:, None, None]
    s_hat = (b_g - rate) / gamma
    if scheme == "backward":
        s_hat = s_hat / 2
    return s_hat.reshape(-1, a.prop_dim).astype(np.float32)


def _check(tset, k, scheme):
    a = tset.adapter
    if a.prop_kind != "vector" or a.layout == network.LAYOUT:
        raise UserInputError("The flow objective regresses the AOUP propulsion g from frame "
                             "differences; it needs an active-particle AOUP file (vector "
                             "propulsion), not a linear or harmonic-network file.")
    if scheme not in SCHEMES:
        raise UserInputError(f"flow_scheme must be one of {', '.join(SCHEMES)} (got {scheme!r}).")
    if k < 1:
        raise UserInputError("flow_step (frames between the differenced frames) must be >= 1.")


class FlowBatchStream(sdata.BatchStream):
    """:class:`scoremodels.data.BatchStream` whose samples carry ``flow_score`` (the score
    target ŝ of the frame difference); the same deterministic chunks and batches."""

    def __init__(self, tset, frames, batch_size, k, cutoff, seed, memory_budget,
                 particles_per_frame=None, flow_step=1, scheme="central"):
        _check(tset, flow_step, scheme)
        self.flow_step, self.scheme = flow_step, scheme
        frames = usable_frames(tset, frames, flow_step, scheme)
        if len(frames) == 0:
            raise UserInputError(f"No training frame has its neighbours ±{flow_step} frames "
                                 "in the same file; lower flow_step or write more frames.")
        super().__init__(tset, frames, batch_size, k, cutoff, seed, memory_budget,
                         particles_per_frame)

    def _extra_samples(self, frames, particles) -> dict:
        return {"flow_score": flow_targets(self.tset, frames, self.flow_step, self.scheme,
                                           particles)}


def fixed_flow_samples(tset, frames, max_samples, k, cutoff, seed, memory_budget,
                       flow_step=1, scheme="central"):
    """The validation set of :func:`scoremodels.data.fixed_samples` with ``flow_score``."""
    frames = usable_frames(tset, frames, flow_step, scheme)
    if len(frames) == 0:
        return None
    a = tset.adapter
    per_frame = tset.bytes_per_frame + a.n_atoms * sdata.sample_bytes(a, k)
    n_fr = int(max(1, min(len(frames), memory_budget // per_frame, max_samples)))
    g = np.random.default_rng([seed, 99991])
    chosen = np.sort(g.choice(len(frames), n_fr, replace=False))
    per = max(1, min(a.n_atoms, max_samples // n_fr))
    parts = np.sort(g.choice(a.n_atoms, per, replace=False))
    out = sdata.frame_samples(tset.read(frames[chosen]), a, k, cutoff, parts)
    out["flow_score"] = flow_targets(tset, frames[chosen], flow_step, scheme, parts)
    return out


def streams(tset, cfg, train_fr, val_fr, K, budget):
    """(training stream, validation samples) for ``cfg.objective == "flow"``."""
    stream = FlowBatchStream(tset, train_fr, cfg.batch_size, K, cfg.cutoff, cfg.seed, budget,
                             cfg.particles_per_frame, cfg.flow_step, cfg.flow_scheme)
    val = fixed_flow_samples(tset, val_fr, cfg.val_samples, K, cfg.cutoff, cfg.seed, budget,
                             cfg.flow_step, cfg.flow_scheme)
    return stream, val


def flow_loss(f, batch, log_sigma, dims):
    """|s(y) − ŝ|²/n, mean over the batch (ŝ = ``batch["flow_score"]``)."""
    import jax.numpy as jnp

    from scoremodels.losses import _ctx

    y = batch["y"]
    ls = jnp.full((y.shape[0],), log_sigma, y.dtype)
    s = f(y, _ctx(batch), ls)
    return jnp.mean(jnp.sum((s - batch["flow_score"]) ** 2, -1)) / len(dims)
