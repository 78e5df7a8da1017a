"""Score-matching objectives (JAX).

A *score function* here is ``f(y, ctx, log_sigma) -> (B, n)``: the score of each
sample's own state over the score dimensions ``dims`` (n of the S components of y).

* :func:`dsm_loss` — denoising score matching with antithetic noise (Boffi &
  Vanden-Eijnden): the whole local state (own state and neighbours) is perturbed by
  ±σζ, ζ ~ N(0, I), and

      ℓ = [σ²|s(y+σζ)|² + 2σ s(y+σζ)·ζ + σ²|s(y−σζ)|² − 2σ s(y−σζ)·ζ] / (2n),

  which is E|σ s + ζ|²/n minus a constant (σ²-weighted DSM); its minimiser is the score
  of ρ * N(0, σ²). Several levels: each sample draws one σ, and the network sees log σ.
* :func:`hyvarinen_loss` — (|s|² + 2∇·s)/n on clean samples, divergence exact (one
  forward-mode jvp per score dimension) or Hutchinson (one Rademacher jvp).
* optional stationary Fokker–Planck residual λ E[(∇·v + v·s)²]/n, v = b − D s, valid
  only where the sample is the whole system (the MLP on one linear-SDE copy or one
  non-interacting particle): ρ⁻¹∇·(ρv) = ∇·v + v·s vanishes pointwise at stationarity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np


def score_and_jacobian(f, y, ctx, log_sigma, dims):
    """Score (B, n) and its Jacobian J (B, n, n), J[b, l, k] = ∂s_l/∂y_{dims[k]}, by one
    forward-mode jvp per score dimension (vectorised over the tangents)."""
    S = y.shape[1]
    tangents = jnp.stack([jnp.broadcast_to(jnp.eye(S, dtype=y.dtype)[d], y.shape) for d in dims])
    g = lambda yy: f(yy, ctx, log_sigma)  # noqa: E731
    s = g(y)
    cols = jax.vmap(lambda t: jax.jvp(g, (y,), (t,))[1])(tangents)  # (n, B, n)
    return s, jnp.moveaxis(cols, 0, -1)


def divergence(f, y, ctx, log_sigma, dims, mode="exact", key=None):
    """Score (B, n) and ∇·s over ``dims`` (B,): exact (trace of the jvp Jacobian) or
    Hutchinson with one Rademacher probe (unbiased; needs ``key``)."""
    if mode == "exact":
        s, J = score_and_jacobian(f, y, ctx, log_sigma, dims)
        return s, jnp.trace(J, axis1=1, axis2=2)
    v = jax.random.rademacher(key, (y.shape[0], len(dims))).astype(y.dtype)
    t = jnp.zeros_like(y).at[:, jnp.asarray(dims)].set(v)
    s, ds = jax.jvp(lambda yy: f(yy, ctx, log_sigma), (y,), (t,))
    return s, jnp.sum(v * ds, -1)


def orthogonal_batch(batch, R, flip, angle, prop_kind):
    """Every sample mapped by its own orthogonal 2×2 matrix R (B, 2, 2) = Rot(angle) ·
    diag(1, −1)^flip: positions, displacements, vector propulsion g, drifts (own and the
    neighbours' ``nb_bx``) as vectors, stiffness blocks as R H Rᵀ, angles θ → ±θ + angle.
    A symmetry of the data when the stationary density is invariant under it."""
    B = R.shape[0]

    def rot(v):  # (B, ..., 2); elementwise (keeps the batch's sharding)
        shape = (B,) + (1,) * (v.ndim - 2)
        r = [[R[:, i, j].reshape(shape) for j in (0, 1)] for i in (0, 1)]
        return jnp.stack([r[0][0] * v[..., 0] + r[0][1] * v[..., 1],
                          r[1][0] * v[..., 0] + r[1][1] * v[..., 1]], -1)

    def rot_mat(M):  # R M Rᵀ for M (B, ..., 2, 2)
        RM = jnp.stack([rot(M[..., :, 0]), rot(M[..., :, 1])], -1)
        return jnp.stack([rot(RM[..., 0, :]), rot(RM[..., 1, :])], -2)

    out = dict(batch)
    y, b = batch["y"], batch["drift"]
    parts, bparts = [rot(y[:, :2])], [rot(b[:, :2])]
    if prop_kind == "angle":
        sign = 1.0 - 2.0 * flip
        parts.append(sign[:, None] * y[:, 2:] + angle[:, None])
        bparts.append(sign[:, None] * b[:, 2:])
        if "nb_p" in batch:
            out["nb_p"] = sign[:, None, None] * batch["nb_p"] + angle[:, None, None]
    elif prop_kind == "vector":
        parts.append(rot(y[:, 2:4]))
        bparts.append(rot(b[:, 2:4]))
        if "nb_p" in batch:
            out["nb_p"] = rot(batch["nb_p"])
    out["y"] = jnp.concatenate(parts, -1)
    out["drift"] = jnp.concatenate(bparts, -1)
    for k in ("nb_rel", "pos", "nb_bx", "flow_score"):
        if k in batch:
            out[k] = rot(batch[k])
    for k in ("nb_hess", "self_hess"):
        if k in batch:
            out[k] = rot_mat(batch[k])
    return out


def _rotation(angle, flip):
    c, s = jnp.cos(angle), jnp.sin(angle)
    sign = 1.0 - 2.0 * flip
    # Rot(angle) @ diag(1, sign)
    return jnp.stack([jnp.stack([c, -s * sign], -1), jnp.stack([s, c * sign], -1)], -2)


def rotate_batch(batch, key, prop_kind):
    """Random rotation of every sample about its particle (positions, displacements,
    vector propulsion, angles, drifts): an augmentation for isotropic systems."""
    B = batch["y"].shape[0]
    a = jax.random.uniform(key, (B,), minval=0.0, maxval=2 * jnp.pi).astype(batch["y"].dtype)
    flip = jnp.zeros_like(a)
    return orthogonal_batch(batch, _rotation(a, flip), flip, a, prop_kind)


def square_symmetry_batch(batch, key, prop_kind):
    """Every sample mapped by a random one of the 8 symmetries of the square (rotations
    by multiples of 90°, with or without a reflection): exact symmetries of a periodic
    square box with an isotropic pair potential, so the stationary density is invariant
    under them (an arbitrary rotation is not one of the periodic box)."""
    B = batch["y"].shape[0]
    m = jax.random.randint(key, (B,), 0, 8)
    a = (m % 4).astype(batch["y"].dtype) * (jnp.pi / 2)
    flip = (m // 4).astype(batch["y"].dtype)
    R = jnp.round(_rotation(a, flip))  # exact 0/±1 entries
    return orthogonal_batch(batch, R, flip, a, prop_kind)


CTX_KEYS = ("nb_rel", "nb_p", "nb_mask", "pos", "nb_bx", "drift", "nb_hess", "self_hess")


def _ctx(batch):
    """Context of a batch for the score function: the neighbourhood arrays, the drift
    and ``y0`` = the clean own state (the pinned g-score reads b_x + v0 (g − g0))."""
    out = {k: v for k, v in batch.items() if k in CTX_KEYS}
    out["y0"] = batch["y"]
    return out


def dsm_loss(f, batch, key, sigmas, dims):
    """Antithetic denoising score matching, mean over the batch (see the module doc)."""
    y = batch["y"]
    B, S = y.shape
    ks = jax.random.split(key, 4)
    sig_levels = jnp.asarray(sigmas, dtype=y.dtype)
    sig = sig_levels[jax.random.randint(ks[0], (B,), 0, len(sigmas))]
    ls = jnp.log(sig)
    z = jax.random.normal(ks[1], y.shape, y.dtype)
    ctx = _ctx(batch)
    total = 0.0
    for sign in (1.0, -1.0):
        c = dict(ctx)
        if "nb_rel" in ctx:
            zr = jax.random.normal(ks[2], ctx["nb_rel"].shape, y.dtype)
            zp = jax.random.normal(ks[3], ctx["nb_p"].shape, y.dtype)
            c["nb_rel"] = ctx["nb_rel"] + sign * sig[:, None, None] * zr
            c["nb_p"] = ctx["nb_p"] + sign * sig[:, None, None] * zp
        s = f(y + sign * sig[:, None] * z, c, ls)
        zs = z[:, jnp.asarray(dims)]
        total = total + (sig[:, None] ** 2 * s ** 2 + sign * 2 * sig[:, None] * s * zs).sum(-1)
    return jnp.mean(total) / (2 * len(dims))


def dsm_g_loss(f, batch, key, sigmas, dims):
    """Denoising score matching with noise on the score dimensions of the own state only
    (g-only DSM: positions and neighbours clean), antithetic, σ²-weighted as
    :func:`dsm_loss`; the minimiser is the score of ρ convolved in g alone, which for a
    pinned g | x keeps the production when σ ≪ √(γ/κ_max)."""
    y = batch["y"]
    B, S = y.shape
    ks = jax.random.split(key, 2)
    sig_levels = jnp.asarray(sigmas, dtype=y.dtype)
    sig = sig_levels[jax.random.randint(ks[0], (B,), 0, len(sigmas))]
    ls = jnp.log(sig)
    sel = jnp.zeros((S,), y.dtype).at[jnp.asarray(dims)].set(1.0)
    z = jax.random.normal(ks[1], y.shape, y.dtype) * sel
    ctx = _ctx(batch)
    total = 0.0
    for sign in (1.0, -1.0):
        s = f(y + sign * sig[:, None] * z, ctx, ls)
        zs = z[:, jnp.asarray(dims)]
        total = total + (sig[:, None] ** 2 * s ** 2 + sign * 2 * sig[:, None] * s * zs).sum(-1)
    return jnp.mean(total) / (2 * len(dims))


def hyvarinen_loss(f, batch, key, log_sigma, dims, div_mode="exact"):
    """Implicit score matching (|s|² + 2∇·s)/n on clean samples, mean over the batch."""
    y = batch["y"]
    ls = jnp.full((y.shape[0],), log_sigma, y.dtype)
    s, div = divergence(f, y, _ctx(batch), ls, dims, div_mode, key)
    return jnp.mean(jnp.sum(s ** 2, -1) + 2 * div) / len(dims)


def fpe_residual(f, batch, log_sigma, dims, D, divb):
    """Mean squared stationary Fokker–Planck residual (∇·v + v·s)² / n, v = b − D s."""
    y = batch["y"]
    ls = jnp.full((y.shape[0],), log_sigma, y.dtype)
    s, J = score_and_jacobian(f, y, _ctx(batch), ls, dims)
    Dm = jnp.asarray(D, y.dtype)
    b = batch["drift"][:, jnp.asarray(dims)]
    v = b - s @ Dm.T
    div_v = divb - jnp.einsum("kl,blk->b", Dm, J)
    return jnp.mean((div_v + jnp.sum(v * s, -1)) ** 2) / len(dims)


@dataclass
class Objective:
    """Which objective to train: ``kind`` "dsm", "dsm_g" (noise on the score dimensions
    only), "hyvarinen" or "flow" (least squares on the score target of frame differences,
    :mod:`scoremodels.flow`; vector propulsion only); ``sigmas`` the DSM noise
    levels (state units; the smallest is used at evaluation); ``div_mode`` "exact" or
    "hutchinson"; ``fpe_weight`` λ of the Fokker–Planck residual (0 = off);
    ``rotate`` random-rotation augmentation; ``augment`` "square": a random one of the
    8 symmetries of the square per sample (:func:`square_symmetry_batch`), "none": off."""

    kind: str = "dsm"
    sigmas: list = field(default_factory=lambda: [0.05])
    div_mode: str = "exact"
    fpe_weight: float = 0.0
    rotate: bool = False
    augment: str = "none"

    @property
    def eval_log_sigma(self) -> float:
        return float(np.log(min(self.sigmas)))


def make_loss(objective: Objective, dims, prop_kind, D_sel=None, divb=0.0):
    """``loss(f, batch, key) -> scalar`` for the objective."""

    def loss(f, batch, key):
        k_rot, k_main, _ = jax.random.split(key, 3)
        if objective.rotate and prop_kind is not None:
            batch = rotate_batch(batch, k_rot, prop_kind)
        elif objective.augment == "square" and prop_kind is not None:
            batch = square_symmetry_batch(batch, k_rot, prop_kind)
        if objective.kind == "dsm":
            val = dsm_loss(f, batch, k_main, objective.sigmas, dims)
        elif objective.kind == "dsm_g":
            val = dsm_g_loss(f, batch, k_main, objective.sigmas, dims)
        elif objective.kind == "flow":  # regression on frame differences (scoremodels.flow)
            from scoremodels.flow import flow_loss

            val = flow_loss(f, batch, objective.eval_log_sigma, dims)
        else:
            val = hyvarinen_loss(f, batch, k_main, objective.eval_log_sigma, dims,
                                 objective.div_mode)
        if objective.fpe_weight > 0:
            val = val + objective.fpe_weight * fpe_residual(
                f, batch, objective.eval_log_sigma, dims, D_sel, divb)
        return val

    return loss
