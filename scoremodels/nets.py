"""Score networks (flax.nnx).

Both networks map a batch of samples (see :mod:`scoremodels.data`) to the score of each
sample's own state over the chosen score dimensions: ``model(y, ctx, log_sigma)`` with
``y`` (B, S), ``ctx`` a dict of per-sample context arrays and ``log_sigma`` (B,) the
log noise level the score belongs to (a constant for single-level training). Output
(B, len(score_dims)), in inverse state units.

:class:`LocalTransformer` — the spatially local transformer of Boffi & Vanden-Eijnden
(2024), with pre-LN blocks and a smooth cutoff envelope: tokens are the particle itself
(token 0) and its K neighbours; token j embeds the minimum-image displacement
(x_j − x_i)/length_scale and the propulsion features (cos θ_j, sin θ_j) or g_j; the
particle's own displacement u = y[:2] shifts every neighbour displacement by −u, so
derivatives with respect to u are derivatives with respect to x_i. Attention weights
are multiplied by the envelope weight of each key token (exactly 0 for padding), so the
output is invariant to neighbour order and smooth as neighbours cross the cutoff. No
positional encoding: translation invariant by construction (unless
``absolute_position`` adds x_i − box centre to token 0, for trapped systems).

:class:`MLP` — for low-dimensional systems (one linear-SDE copy, or one non-interacting
particle with its absolute position).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
from flax import nnx

SIZES = {
    # the anchor's production network: 4 layers x 4 heads x 256 wide, 64 neighbours
    "anchor": dict(depth=4, heads=4, width=256, neighbours=64, ffn=256, embed_depth=2,
                   readout_depth=2),
    "small": dict(depth=2, heads=4, width=64, neighbours=16, ffn=128, embed_depth=2,
                  readout_depth=2),
    "tiny": dict(depth=1, heads=2, width=16, neighbours=6, ffn=32, embed_depth=1,
                 readout_depth=1),
}


@dataclass
class NetConfig:
    """Architecture of a score network (saved with the run)."""

    kind: str = "transformer"           # "transformer" | "mlp" | "pinned" (AOUP g-sector)
    depth: int = 2                      # transformer blocks, or MLP hidden layers
    heads: int = 4
    width: int = 64
    ffn: int = 128
    neighbours: int = 16                # K
    embed_depth: int = 2
    readout_depth: int = 2
    cutoff: float | None = None         # neighbour radius (None: K nearest at any distance)
    envelope_width: float = 0.2         # envelope ramps over the outer 20 % of the cutoff
    length_scale: float = 1.0           # displacements are divided by this
    input_scale: list | None = None     # MLP on a linear-SDE copy: per-component scale of y
    state_dim: int = 3                  # S
    score_dims: tuple = (0, 1, 2)       # which of the S components the score covers
    x_dims: tuple = (0, 1)
    prop_kind: str | None = "angle"     # "angle" | "vector" | None
    absolute_position: bool = False     # token 0 also sees x_i − centre (trapped systems)
    propulsion_prior: bool = False      # s_g = −g + NN (the stationary OU marginal)
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def named(cls, size: str, **kw) -> "NetConfig":
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
        return cls(**{**SIZES[size], **kw})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score_dims"], d["x_dims"] = list(self.score_dims), list(self.x_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        d = dict(d)
        d["score_dims"], d["x_dims"] = tuple(d["score_dims"]), tuple(d["x_dims"])
        return cls(**d)


def _mlp(sizes, rngs):
    return nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])


def _run_mlp(layers, h):
    for m, layer in enumerate(layers):
        h = layer(h)
        if m < len(layers) - 1:
            h = jax.nn.gelu(h)
    return h


def _prop_features(p, kind):
    if kind == "angle":
        return jnp.concatenate([jnp.cos(p), jnp.sin(p)], axis=-1)
    return p


def smooth_envelope(r, cutoff, width):
    """1 inside (1 − width)·cutoff, C² smoothstep to 0 at the cutoff (JAX)."""
    r_on = (1 - width) * cutoff
    t = jnp.clip((r - r_on) / (cutoff - r_on), 0.0, 1.0)
    return 1 - t ** 3 * (10 - 15 * t + 6 * t * t)


class Block(nnx.Module):
    """Pre-LN transformer block: h + MHA(LN h), then h + FFN(LN h); attention weights
    scaled by the key tokens' envelope weights."""

    def __init__(self, width, heads, ffn, rngs):
        self.heads = heads
        self.ln1 = nnx.LayerNorm(width, rngs=rngs)
        self.qkv = nnx.Linear(width, 3 * width, rngs=rngs)
        self.proj = nnx.Linear(width, width, rngs=rngs)
        self.ln2 = nnx.LayerNorm(width, rngs=rngs)
        self.ff1 = nnx.Linear(width, ffn, rngs=rngs)
        self.ff2 = nnx.Linear(ffn, width, rngs=rngs)

    def __call__(self, h, w):
        B, T, W = h.shape
        H = self.heads
        q, k, v = jnp.split(self.qkv(self.ln1(h)), 3, axis=-1)
        q, k, v = (a.reshape(B, T, H, W // H) for a in (q, k, v))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(W // H)
        logits = logits - jax.lax.stop_gradient(logits.max(-1, keepdims=True))
        e = jnp.exp(logits) * w[:, None, None, :]
        att = e / e.sum(-1, keepdims=True)
        out = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(B, T, W)
        h = h + self.proj(out)
        return h + self.ff2(jax.nn.gelu(self.ff1(self.ln2(h))))


class LocalTransformer(nnx.Module):
    """Spatially local transformer score network (see the module docstring)."""

    def __init__(self, cfg: NetConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        P = 2 if cfg.prop_kind else 0
        n_in = 2 + P + 1 + (2 if cfg.absolute_position else 0) + 1  # rel, p, self flag, pos, logσ
        W = cfg.width
        self.embed = _mlp([n_in] + [W] * cfg.embed_depth, rngs)
        self.blocks = nnx.List([Block(W, cfg.heads, cfg.ffn, rngs) for _ in range(cfg.depth)])
        self.ln_out = nnx.LayerNorm(W, rngs=rngs)
        self.readout = _mlp([W] * cfg.readout_depth + [len(cfg.score_dims)], rngs)

    def __call__(self, y, ctx, log_sigma):
        cfg = self.cfg
        B = y.shape[0]
        K = ctx["nb_rel"].shape[1]
        u = y[:, :2]
        rel = ctx["nb_rel"] - u[:, None, :]                       # (B, K, 2)
        tokens_rel = jnp.concatenate([jnp.zeros((B, 1, 2), y.dtype), rel], 1) / cfg.length_scale
        feats = [tokens_rel]
        if cfg.prop_kind:
            p_self = y[:, 2:]
            p_all = jnp.concatenate([p_self[:, None, :], ctx["nb_p"]], 1)
            feats.append(_prop_features(p_all, cfg.prop_kind))
        flag = jnp.zeros((B, K + 1, 1), y.dtype).at[:, 0].set(1.0)
        feats.append(flag)
        if cfg.absolute_position:
            pos = (ctx["pos"] + u) / cfg.length_scale
            feats.append(jnp.zeros((B, K + 1, 2), y.dtype).at[:, 0].set(pos))
        feats.append(jnp.broadcast_to(log_sigma[:, None, None], (B, K + 1, 1)).astype(y.dtype))
        h = _run_mlp(self.embed, jnp.concatenate(feats, -1))
        mask = ctx["nb_mask"]
        if cfg.cutoff is not None:
            r = jnp.sqrt(jnp.sum(rel ** 2, -1) + 1e-12)
            mask = mask * smooth_envelope(r, cfg.cutoff, cfg.envelope_width)
        w = jnp.concatenate([jnp.ones((B, 1), y.dtype), mask], 1)
        for blk in self.blocks:
            h = blk(h, w)
        out = _run_mlp(self.readout, self.ln_out(h[:, 0]))
        return _with_prior(out, y, cfg)


class MLP(nnx.Module):
    """Plain MLP score network for low-dimensional states: input = the own state (angles
    as cos/sin; for particles also x_i − centre), output = its score components."""

    def __init__(self, cfg: NetConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        n_in = self._n_in(cfg) + 1
        self.layers = _mlp([n_in] + [cfg.width] * cfg.depth + [len(cfg.score_dims)], rngs)

    @staticmethod
    def _n_in(cfg):
        if cfg.prop_kind is None:
            return cfg.state_dim
        return 2 + 2 if cfg.prop_kind == "angle" else 2 + 2

    def __call__(self, y, ctx, log_sigma):
        cfg = self.cfg
        if cfg.prop_kind is None:
            scale = (jnp.asarray(cfg.input_scale, y.dtype) if cfg.input_scale is not None
                     else cfg.length_scale)
            feats = [y / scale]
        else:
            feats = [(ctx["pos"] + y[:, :2]) / cfg.length_scale,
                     _prop_features(y[:, 2:], cfg.prop_kind)]
        feats.append(log_sigma[:, None].astype(y.dtype))
        out = _run_mlp(self.layers, jnp.concatenate(feats, -1))
        return _with_prior(out, y, cfg)


def _with_prior(out, y, cfg):
    if cfg.propulsion_prior and cfg.prop_kind == "vector":
        prior = jnp.stack([-y[:, d] if d >= 2 else jnp.zeros_like(y[:, 0])
                           for d in cfg.score_dims], -1)
        out = out + prior
    return out


def build(cfg: NetConfig):
    """A freshly initialised network for ``cfg`` (parameters from ``cfg.seed``)."""
    return _build_any(cfg, nnx.Rngs(cfg.seed))


def count_parameters(model) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


# ---------------------------------------------------------------------------- pinned g-score
def pair_hessians(rel, mask, potential: dict):
    """μ × Hessian blocks of the pair energy for every neighbour (JAX).

    ``rel`` (B, K, 2) = x_j − x_i, ``mask`` (B, K) weights (0 for padding), ``potential``
    a dict with ``kind`` ("soft_harmonic" or "none"), ``k``, ``beta`` (softplus
    sharpness), ``contact`` (2·radius), ``mu`` and ``cutoff`` (model lengths). Returns
    H (B, K, 2, 2), μ ∂²U_ij/∂x_i² (1/time): U''(r) r̂r̂ᵀ + U'(r)/r (I − r̂r̂ᵀ) with
    U'(r) = −k f_β(2r0 − r), U''(r) = k σ_β(2r0 − r) for the anchor's soft discs, so that
    A_ii = Σ_j H_j (+ μκ I) and A_ij = −H_j; tr A_ii = −μ∇_i·F_i."""
    B, K, _ = rel.shape
    if potential.get("kind", "none") != "soft_harmonic":
        return jnp.zeros((B, K, 2, 2), rel.dtype)
    r2 = jnp.sum(rel ** 2, -1)
    r = jnp.sqrt(r2 + 1e-12)
    u = potential["beta"] * (potential["contact"] - r)
    soft = jax.nn.softplus(u) / potential["beta"]
    sig = jax.nn.sigmoid(u)
    inside = (r < potential["cutoff"]) * mask
    k, mu = potential["k"], potential["mu"]
    rh = rel / r[..., None]
    outer = rh[..., :, None] * rh[..., None, :]
    eye = jnp.eye(2, dtype=rel.dtype)
    H = k * sig[..., None, None] * outer - (k * soft / r)[..., None, None] * (eye - outer)
    return mu * H * inside[..., None, None]


def stiffness_blocks(ctx, rel, extra):
    """(H, A_ii) of a batch (1/time): the neighbour blocks H_j = −A_ij (B, K, 2, 2) and
    the own block A_ii (B, 2, 2), from the soft-disc pair Hessians (+ the trap's μκ) or,
    for a harmonic network (potential kind "network", :mod:`scoremodels.network`), read
    from the samples' ``nb_hess`` and ``self_hess``."""
    pot = extra["potential"]
    if pot.get("kind") == "network":
        return ctx["nb_hess"] * ctx["nb_mask"][..., None, None], ctx["self_hess"]
    H = pair_hessians(rel, ctx["nb_mask"], pot)
    return H, H.sum(1) + extra["mu_kappa"] * jnp.eye(2, dtype=rel.dtype)


def linear_response_score(bx_self, nb_bx, H, gamma, v0, mu_kappa, A_ii=None):
    """Linear-response g-score s_g,i = −[(A_ii + γ) b_x,i + Σ_j A_ij b_x,j] / (γ v0) (JAX).

    Exact for a harmonic network dx = (v0 g − A x) dt (A = μ × Hessian), where the
    stationary density is Gaussian with g | x pinned to force balance; ``bx_self`` (B, 2)
    and ``nb_bx`` (B, K, 2) are the drifts b_x = v0 g + μF (length/time), H from
    :func:`pair_hessians`, ``mu_kappa`` the trap's μκ (1/time), ``A_ii`` the own block
    when given (else Σ_j H_j + μκ I). Units of 1/g."""
    if A_ii is None:
        A_ii = H.sum(1) + mu_kappa * jnp.eye(2, dtype=bx_self.dtype)
    own = jnp.einsum("bij,bj->bi", A_ii, bx_self) + gamma * bx_self
    cross = -jnp.einsum("bkij,bkj->bi", H, nb_bx)
    return -(own + cross) / (gamma * v0)


class PinnedScore(nnx.Module):
    """g-sector score network for (hypoelliptic) AOUP: s_g = s_lr + c · NN.

    ``s_lr`` is :func:`linear_response_score` (exact for harmonic networks and traps);
    the correction NN is a permutation-invariant neighbourhood network whose tokens carry
    each particle's force-balance residual r_j = b_x,j / v0 = g_j + μF_j/v0 (÷ its RMS
    ``r_scale``), the displacement x_j − x_i (÷ ``length_scale``) and the contact
    stiffness k σ_β(2r0 − r_ij); token embeddings are summed with the envelope weights
    (exactly 0 for padding) and read out to 2 components. The read-out's last layer
    starts at zero, so the untrained network *is* the linear-response score, and the
    output scale c = ``s_scale`` (the RMS of s_lr on the first batch, ∝ 1/γ) lets it
    express slopes ~1/γ. The own residual is b_x,i/v0 + (g − g_data), so derivatives in
    g_i are exact (∂r_i/∂g_i = I). ``cfg.extra`` holds gamma, v0, mu_kappa, potential,
    r_scale, s_scale."""

    def __init__(self, cfg: NetConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        W = cfg.width
        n_in = 2 + 2 + 1 + 2 + 3 + 1  # rel, r, stiffness, normal residuals, A_ii, flag
        zero = nnx.initializers.zeros_init()
        self.embed = _mlp([n_in] + [W] * max(cfg.embed_depth, 1), rngs)
        sizes = [W] * max(cfg.readout_depth, 1) + [2]
        self.readout = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-2], sizes[1:-1])]
            + [nnx.Linear(sizes[-2], 2, kernel_init=zero, rngs=rngs)])
        # learned stiffness: geometry-only embeddings (no residuals, so linear in g) give a
        # symmetric δA_ii and a factor (1 + c_j) on every cross block A_ij (zero at start)
        self.geo_embed = _mlp([n_in - 4] + [W] * max(cfg.embed_depth, 1), rngs)
        self.geo_self = nnx.Linear(W, 3, kernel_init=zero, rngs=rngs)
        self.geo_pair = nnx.Linear(2 * W, 1, kernel_init=zero, rngs=rngs)

    def parts(self, y, ctx, internals=False):
        """(s_lr, tokens, weights) of a batch: the linear-response score, the token inputs
        and the envelope weights (with ``internals`` also (b_x,i, b_x,j, H))."""
        cfg, ex = self.cfg, self.cfg.extra
        gamma, v0 = ex["gamma"], ex["v0"]
        B = y.shape[0]
        bx = ctx["drift"][:, :2] + v0 * (y[:, 2:4] - ctx["y0"][:, 2:4])
        rel = ctx["nb_rel"] - y[:, None, :2]
        mask = ctx["nb_mask"]
        if cfg.cutoff is not None:
            r = jnp.sqrt(jnp.sum(rel ** 2, -1) + 1e-12)
            mask = mask * smooth_envelope(r, cfg.cutoff, cfg.envelope_width)
        H, A_own = stiffness_blocks(ctx, rel, ex)
        nb_bx = ctx["nb_bx"]
        s_lr = linear_response_score(bx, nb_bx, H, gamma, v0, ex["mu_kappa"], A_own)
        stiff_scale = ex.get("stiffness_scale", 1.0)
        # residuals in units of the pinning width r_pin = √(γ/κ_max) (asinh: linear inside
        # it, logarithmic for free particles, whose residual is g itself)
        rp = ex.get("r_pin", ex["r_scale"])
        r_i = bx / v0
        r_j = nb_bx / v0
        A_ii = A_own / stiff_scale
        self_tok = jnp.concatenate([jnp.zeros((B, 2), y.dtype), jnp.arcsinh(r_i / rp),
                                    jnp.zeros((B, 3), y.dtype),
                                    jnp.stack([A_ii[:, 0, 0], A_ii[:, 1, 1], A_ii[:, 0, 1]], -1),
                                    jnp.ones((B, 1), y.dtype)], -1)
        stiff = jnp.trace(H, axis1=-2, axis2=-1)[..., None] / stiff_scale
        dist = jnp.sqrt(jnp.sum(rel ** 2, -1, keepdims=True) + 1e-12)
        n_hat = rel / dist
        # the contact's pinned quantities: relative and own residual along x_j − x_i
        rel_n = jnp.sum((r_i[:, None] - r_j) * n_hat, -1, keepdims=True)
        own_n = jnp.sum(r_i[:, None] * n_hat, -1, keepdims=True)
        nb_tok = jnp.concatenate([rel / cfg.length_scale, jnp.arcsinh(r_j / rp), stiff,
                                  jnp.arcsinh(rel_n / rp), jnp.arcsinh(own_n / rp),
                                  jnp.zeros(rel.shape[:2] + (4,), y.dtype)], -1)
        tokens = jnp.concatenate([self_tok[:, None], nb_tok], 1)
        w = jnp.concatenate([jnp.ones((B, 1), y.dtype), mask], 1)
        if internals:
            return s_lr, tokens, w, (bx, nb_bx, H)
        return s_lr, tokens, w

    def __call__(self, y, ctx, log_sigma):
        ex = self.cfg.extra
        s_lr, tokens, w, (bx, nb_bx, H) = self.parts(y, ctx, True)
        h = jax.nn.gelu(_run_mlp(self.embed, tokens))
        pooled = h[:, 0] + jnp.einsum("bk,bkw->bw", w[:, 1:], h[:, 1:])
        out = _run_mlp(self.readout, pooled)
        # learned stiffness: −[δA_ii b_x,i − Σ_j c_j H_j b_x,j] / (γ v0)
        geo = jnp.concatenate([tokens[..., :2], tokens[..., 4:5], tokens[..., 7:]], -1)
        hg = jax.nn.gelu(_run_mlp(self.geo_embed, geo))
        pg = hg[:, 0] + jnp.einsum("bk,bkw->bw", w[:, 1:], hg[:, 1:])
        a = self.geo_self(pg) * ex.get("stiffness_scale", 1.0)
        dA = jnp.stack([jnp.stack([a[:, 0], a[:, 2]], -1), jnp.stack([a[:, 2], a[:, 1]], -1)], 1)
        K = hg.shape[1] - 1
        pair_in = jnp.concatenate([jnp.broadcast_to(pg[:, None], hg[:, 1:].shape), hg[:, 1:]], -1)
        c = self.geo_pair(pair_in)[..., 0] * w[:, 1:]
        corr = (jnp.einsum("bij,bj->bi", dA, bx)
                - jnp.einsum("bk,bkij,bkj->bi", c, H, nb_bx)) / (ex["gamma"] * ex["v0"])
        del K
        return s_lr - corr + ex["s_scale"] * out


def _build_any(cfg: NetConfig, rngs):
    if cfg.kind == "pinned":
        return PinnedScore(cfg, rngs)
    return LocalTransformer(cfg, rngs) if cfg.kind == "transformer" else MLP(cfg, rngs)
