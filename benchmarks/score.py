"""Throughput of scoremodels: training samples/s of the transformer score network, and
neighbourhood construction for large N.

A. **Training step** (denoising score matching, antithetic, AdamW, one jitted step incl.
   the EMA update) of scoremodels' ``LocalTransformer`` at the named sizes (``tiny``,
   ``small``, ``anchor`` = 4 layers × 4 heads × 256 wide, 64 neighbours), against a
   **reference**: the same architecture written in plain JAX with the attention through
   ``jax.nn.dot_product_attention`` and a boolean mask (no envelope), parameters in a
   dict, the same loss and optimiser. Samples/s = batch / median step time (after
   compilation and 2 warm-up steps). Same inputs for both.
B. **Inference** particles/s of the anchor size (score + exact divergence by jvp over
   the 3 own-state components, as ``scoremodels epr`` evaluates).
C. **Neighbourhoods** for N = 32768 at φ = 0.5 (soft-disc radius 1): scoremodels' cell
   list k-NN (K = 64) against the all-pairs top-k the anchor uses (``jax.lax.top_k`` over
   all N minimum-image distances, in row blocks), as a time ratio.

Run ``python benchmarks/score.py`` (a few minutes on 2 cores) or ``--quick``
(tiny/small only, N = 8192 in C). Runs on the default JAX backend (GPU if present).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_header  # noqa: E402


def _batch(B, K, seed=0):
    g = np.random.default_rng(seed)
    return {"y": np.concatenate([np.zeros((B, 2)), g.uniform(-np.pi, np.pi, (B, 1))], 1)
            .astype(np.float32),
            "drift": g.normal(size=(B, 3)).astype(np.float32),
            "pos": np.zeros((B, 2), np.float32),
            "nb_rel": g.normal(0, 4, (B, K, 2)).astype(np.float32),
            "nb_p": g.uniform(-np.pi, np.pi, (B, K, 1)).astype(np.float32),
            "nb_mask": np.ones((B, K), np.float32)}


def _time(fn, reps):
    fn()
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def bench_train(size, B, reps):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from scoremodels.losses import dsm_loss
    from scoremodels.nets import SIZES, NetConfig, build

    cfg = NetConfig.named(size, length_scale=4.0)
    K = cfg.neighbours
    batch = {k: jnp.asarray(v) for k, v in _batch(B, K).items()}
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-4))
    dims = (0, 1, 2)

    # scoremodels
    graphdef, params = nnx.split(build(cfg))
    state = [params, tx.init(params), params]

    @jax.jit
    def step(params, opt, ema, key):
        f = lambda p: dsm_loss(nnx.merge(graphdef, p), batch, key, [0.05], dims)  # noqa: E731
        v, g = jax.value_and_grad(f)(params)
        u, opt = tx.update(g, opt, params)
        params = optax.apply_updates(params, u)
        return params, opt, jax.tree.map(lambda e, p: 0.999 * e + 0.001 * p, ema, params), v

    def run_ours():
        out = step(*state, jax.random.key(1))
        jax.block_until_ready(out)

    t_ours = _time(run_ours, reps)

    # reference: plain JAX, same architecture, jax.nn.dot_product_attention
    s = SIZES[size]
    W, H, F, depth = s["width"], s["heads"], s["ffn"], s["depth"]
    keys = iter(jax.random.split(jax.random.key(0), 100))

    def lin(a, b):
        return {"w": jax.random.normal(next(keys), (a, b)) / math.sqrt(a), "b": jnp.zeros(b)}

    def mlp_p(sizes):
        return [lin(a, b) for a, b in zip(sizes[:-1], sizes[1:])]

    def ln_p():
        return {"g": jnp.ones(W), "b": jnp.zeros(W)}

    P = {"embed": mlp_p([6] + [W] * s["embed_depth"]),
         "blocks": [{"ln1": ln_p(), "qkv": lin(W, 3 * W), "proj": lin(W, W), "ln2": ln_p(),
                     "f1": lin(W, F), "f2": lin(F, W)} for _ in range(depth)],
         "ln": ln_p(), "out": mlp_p([W] * s["readout_depth"] + [3])}

    def ap(p, x):
        return x @ p["w"] + p["b"]

    def run_mlp(ps, h):
        for i, p in enumerate(ps):
            h = ap(p, h)
            if i < len(ps) - 1:
                h = jax.nn.gelu(h)
        return h

    def ln(p, h):
        m = h.mean(-1, keepdims=True)
        v = ((h - m) ** 2).mean(-1, keepdims=True)
        return (h - m) / jnp.sqrt(v + 1e-6) * p["g"] + p["b"]

    def ref_net(P, y, ctx, ls):
        Bn = y.shape[0]
        rel = jnp.concatenate([jnp.zeros((Bn, 1, 2)), ctx["nb_rel"] - y[:, None, :2]], 1) / 4.0
        th = jnp.concatenate([y[:, None, 2:], ctx["nb_p"]], 1)
        flag = jnp.zeros((Bn, K + 1, 1)).at[:, 0].set(1.0)
        x = jnp.concatenate([rel, jnp.cos(th), jnp.sin(th), flag,
                             jnp.broadcast_to(ls[:, None, None], (Bn, K + 1, 1))], -1)
        h = run_mlp(P["embed"], x)
        mask = jnp.concatenate([jnp.ones((Bn, 1), bool), ctx["nb_mask"] > 0], 1)
        for b in P["blocks"]:
            q, k, v = jnp.split(ap(b["qkv"], ln(b["ln1"], h)), 3, -1)
            q, k, v = (a.reshape(Bn, K + 1, H, W // H) for a in (q, k, v))
            o = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :])
            h = h + ap(b["proj"], o.reshape(Bn, K + 1, W))
            h = h + ap(b["f2"], jax.nn.gelu(ap(b["f1"], ln(b["ln2"], h))))
        return run_mlp(P["out"], ln(P["ln"], h[:, 0]))

    ref_state = [P, tx.init(P), P]

    @jax.jit
    def ref_step(params, opt, ema, key):
        f = lambda p: dsm_loss(lambda y, c, l: ref_net(p, y, c, l), batch, key, [0.05], dims)  # noqa: E731
        v, g = jax.value_and_grad(f)(params)
        u, opt = tx.update(g, opt, params)
        params = optax.apply_updates(params, u)
        return params, opt, jax.tree.map(lambda e, p: 0.999 * e + 0.001 * p, ema, params), v

    def run_ref():
        jax.block_until_ready(ref_step(*ref_state, jax.random.key(1)))

    t_ref = _time(run_ref, reps)
    return B / t_ours, B / t_ref


def bench_inference(B, reps):
    import jax
    import jax.numpy as jnp

    from scoremodels.losses import score_and_jacobian
    from scoremodels.nets import NetConfig, build

    cfg = NetConfig.named("anchor", length_scale=4.0)
    model = build(cfg)
    batch = {k: jnp.asarray(v) for k, v in _batch(B, cfg.neighbours).items()}
    ctx = {k: batch[k] for k in ("nb_rel", "nb_p", "nb_mask", "pos")}

    @jax.jit
    def ev(y):
        return score_and_jacobian(model, y, ctx, jnp.zeros(B), (0, 1, 2))

    t = _time(lambda: jax.block_until_ready(ev(batch["y"])), reps)
    return B / t


def bench_neighbours(N, K=64):
    import jax
    import jax.numpy as jnp

    from scoremodels.data import neighbourhoods

    L = math.sqrt(N * math.pi / 0.5)
    pos = np.random.default_rng(0).random((N, 2)) * L
    neighbourhoods(pos[:100], L, K)  # compile
    t0 = time.perf_counter()
    idx, _, _ = neighbourhoods(pos, L, K)
    t_cell = time.perf_counter() - t0

    P = jnp.asarray(pos, jnp.float32)

    @jax.jit
    def rows(block):
        d = P[None, :, :] - block[:, None, :]
        d = d - L * jnp.round(d / L)
        r2 = (d ** 2).sum(-1)
        return jax.lax.top_k(-r2, K + 1)[1]

    rb = 1024
    jax.block_until_ready(rows(P[:rb]))
    t0 = time.perf_counter()
    outs = [rows(P[i:i + rb]) for i in range(0, N - N % rb, rb)]
    jax.block_until_ready(outs)
    t_all = time.perf_counter() - t0
    ref = np.asarray(outs[0])[:, 1:]
    agree = np.mean([set(ref[i]) == set(idx[i]) for i in range(64)])
    return t_cell, t_all, agree


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import jax

    print(machine_header("scoremodels benchmark"))
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"devices {jax.devices()}")
    sizes = [("tiny", 256), ("small", 256)] + ([] if args.quick else [("anchor", 64)])
    print("\nA. training step (DSM antithetic + AdamW + EMA), samples/s")
    print("| size   | batch | scoremodels | plain-JAX reference | ratio |")
    print("|--------|------:|------------:|--------------------:|------:|")
    for size, B in sizes:
        ours, ref = bench_train(size, B, reps=3 if size == "anchor" else 10)
        print(f"| {size:<6} | {B:>5} | {ours:>11.0f} | {ref:>19.0f} | {ours / ref:>5.2f} |")
    if not args.quick:
        print("\nB. inference, anchor size, score + exact divergence (3 jvps): "
              f"{bench_inference(256, 3):.0f} particles/s")
    N = 8192 if args.quick else 32768
    t_cell, t_all, agree = bench_neighbours(N)
    print(f"\nC. neighbourhoods, N = {N}, phi = 0.5, K = 64: cell lists {t_cell:.3f} s, "
          f"all-pairs top_k (JAX, row blocks) {t_all:.3f} s, ratio {t_all / t_cell:.3g}x "
          f"(same sets for {agree:.0%} of checked particles)")


if __name__ == "__main__":
    main()
