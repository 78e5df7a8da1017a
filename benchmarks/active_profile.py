"""Where a serial ABP step goes, in the developed states of ``benchmarks/active.py``.

Replays :func:`simcore.models.active.advance`'s serial Verlet path kernel by kernel
(displacement check, list rebuild, pair forces, integration, renumbering) with a timer
around each call, and times ``advance`` itself for comparison. One thread.

    cd benchmarks && PYTHONPATH=.. NUMBA_NUM_THREADS=1 taskset -c 1 python active_profile.py \
        --n 16384 --states mips,fluid --steps 2000
"""

from __future__ import annotations

import argparse
import importlib
import time

import numba
import numpy as np

import active as bench
from simcore import neighbors
from simcore.models import active
from simcore.rng import kernel_key

F = importlib.import_module("simcore.models.active.forces")  # the module, not forces()
I = importlib.import_module("simcore.models.active.integrate")


def profile(n: int, phi: float, steps: int, repeats: int) -> dict:
    params = bench.abp_params(n, "gaussian", phi)
    key = kernel_key(bench.SEED)
    state0, step0 = bench.start_state(n, phi, "developed")
    # warm-up (JIT) on a copy
    st = {k: v.copy() for k, v in state0.items()}
    active.advance(st, params, key, step0, bench.WARMUP, parallel=False)

    # 1) advance() itself, best of `repeats`, from the same start each time
    t_adv = np.inf
    for _ in range(repeats):
        st = {k: v.copy() for k, v in state0.items()}
        active.advance(st, params, key, step0, 1, parallel=False)  # lists, work arrays
        t0 = time.perf_counter()
        active.advance(st, params, key, step0 + 1, steps, parallel=False)
        t_adv = min(t_adv, time.perf_counter() - t0)

    # 2) kernel by kernel (serial Verlet path of _run_steps)
    best = None
    for _ in range(repeats):
        st = {k: v.copy() for k, v in state0.items()}
        active.advance(st, params, key, step0, 1, parallel=False)
        w = st["_work"]
        pot, sig2, eps24, rc2, k, beta, contact = active._force_args(params)
        L, nc = params.box, w.get("verlet_nc") or w["grid_nc"]
        half_skin2 = 0.25 * (w["r_list"] - np.sqrt(rc2)) ** 2
        t = dict(disp=0.0, rebuild=0.0, force=0.0, integrate=0.0, renumber=0.0)
        rebuilds = 0
        moved2 = None
        m = int(w["status"][I.ST_PAIRS]) if hasattr(I, "ST_PAIRS") else 0
        pairs_listed = pairs_in = 0
        for s in range(step0 + 1, step0 + 1 + steps):
            if s % active.SORT_EVERY == 0 and st["sorted_at"][0] != s:
                t0 = time.perf_counter()
                active._renumber_by_cell(st, params, w)
                moved2 = None
                st["sorted_at"][0] = s
                st["n_hat"] = active._orientation(st["theta"])
                t["renumber"] += time.perf_counter() - t0
            t1 = time.perf_counter()
            if moved2 is None:  # the integration returns it (fused) since 2026-12-04
                moved2 = neighbors.max_displacement2(st["positions"], w["ref"], L)
                t["disp"] += time.perf_counter() - t1
            t1 = time.perf_counter()
            if w["status"][I.ST_LISTS_VALID] == 0 or moved2 > half_skin2:
                neighbors.build_verlet2d(st["positions"], L, nc, L / nc, w["bucket_start"],
                                         w["order"], w["xs"], w["ys"], w["r_list"], w["nb"],
                                         w["nb_count"], w["ref"])
                w["status"][I.ST_LISTS_VALID] = 1
                if hasattr(F, "_half_pairs"):
                    m = F._half_pairs(w["nb"], w["nb_count"], w["pi"], w["pj"])
                rebuilds += 1
                t["rebuild"] += time.perf_counter() - t1
            t0 = time.perf_counter()
            if hasattr(F, "_half_pairs"):
                F._wca_pair_forces_serial(st["positions"], L, w["pi"], w["pj"], m, sig2, eps24,
                                          rc2, w["pair_buf"], w["force"])
            else:
                F._verlet_forces_serial(st["positions"], L, w["nb"], w["nb_count"], pot, sig2,
                                        eps24, rc2, k, beta, contact, w["force"])
            t1 = time.perf_counter()
            moved2 = I._integrate_abp_serial(
                st["positions"], st["image"], st["theta"], st["n_hat"], w["force"], L,
                params.dt, params.v0, params.mu, params.D_t, params.D_r, False,
                np.uint64(key), np.int64(s), active._max_jump(params),
                np.zeros(1, np.int64), st["ids"], w["ref"], True)
            t2 = time.perf_counter()
            t["force"] += t1 - t0
            t["integrate"] += t2 - t1
            if s == step0 + 1:
                pairs_listed, pairs_in = count_pairs(st, w, L, rc2)
        if best is None or sum(t.values()) < sum(best[0].values()):
            best = (t, rebuilds, pairs_listed, pairs_in)
    t, rebuilds, pairs_listed, pairs_in = best
    return dict(n=n, phi=phi, steps=steps, advance=t_adv, parts=t, rebuilds=rebuilds,
                pairs_listed=pairs_listed, pairs_in=pairs_in)


def count_pairs(st, w, L, rc2):
    """Listed pairs (half) and pairs inside the cutoff at this step."""
    pos = st["positions"][:, :2]
    nb, cnt = w["nb"], w["nb_count"]
    listed = int(cnt.sum()) // 2
    inside = 0
    for i in range(pos.shape[0]):
        js = nb[i, :cnt[i]]
        d = pos[i] - pos[js]
        d -= L * np.floor(d / L + 0.5)
        inside += int(((d ** 2).sum(1) < rc2).sum())
    return listed, inside // 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--states", default="mips,fluid")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skin", type=float, default=None,
                    help="Verlet skin in diameters (default: simcore's VERLET_SKIN)")
    args = ap.parse_args()
    if args.skin is not None:
        active.VERLET_SKIN = args.skin
    numba.set_num_threads(1)
    for name in args.states.split(","):
        r = profile(args.n, bench.STATES[name], args.steps, args.repeats)
        ps = r["n"] * r["steps"]
        ns = lambda x, ps=ps: 1e9 * x / ps  # noqa: E731
        parts = r["parts"]
        total = sum(parts.values())
        print(f"{name}: N = {r['n']}, phi = {r['phi']}, {r['steps']} steps (best of "
              f"{args.repeats}), skin {active.VERLET_SKIN} diameters")
        print(f"  advance(): {ps / r['advance'] / 1e6:.2f} M particle-steps/s "
              f"({ns(r['advance']):.1f} ns/particle-step)")
        print(f"  kernel by kernel: {ns(total):.1f} ns/particle-step in all; advance() minus "
              f"that {ns(r['advance'] - total):+.1f} (advance's per-chunk Python cost, less "
              "the replay's own per-call cost)")
        for key, v in parts.items():
            print(f"    {key:10s} {ns(v):6.1f} ns/particle-step  ({100 * v / total:4.1f} %)")
        print(f"  rebuilds: {r['rebuilds']} in {r['steps']} steps (every "
              f"{r['steps'] / max(r['rebuilds'], 1):.1f}), "
              f"{1e3 * parts['rebuild'] / max(r['rebuilds'], 1):.2f} ms each")
        print(f"  listed pairs (half lists): {r['pairs_listed']} "
              f"({r['pairs_listed'] / r['n']:.2f}/particle), inside rc: {r['pairs_in']} "
              f"({r['pairs_in'] / r['n']:.2f}/particle); force loop "
              f"{1e9 * parts['force'] / r['steps'] / r['pairs_listed']:.2f} ns/listed pair")


if __name__ == "__main__":
    main()
