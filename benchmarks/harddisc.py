"""Hard-disc EDMD throughput (collisions and events per CPU-second, one thread) and the cost
of the Boltzmann entropy S_B for 10^6 particles.

    .venv/bin/python benchmarks/harddisc.py [--quick]

Rates are CPU-time rates (time.process_time) of one kernel call in an equilibrium square box
with hard walls (no partition), after a warm-up call that compiles and equilibrates; each
N = 10^4 row is the best of ``--repeats`` calls (the machine is shared: CPU time still
varies with the other jobs' cache pressure). The other columns break the event stream down
per collision: all events, cell crossings, stale pair events (partner collided since).
Reference rows, run side by side: the same engine with a single cell (every event scans all
N discs: the straightforward O(N)-per-event EDMD) at N = 10^3, and the anchor table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import headline, load_note, machine_header  # noqa: E402

from simcore.analysis import boltzmann as bz  # noqa: E402
from simcore.models import harddisc as hd  # noqa: E402

ANCHORS = {0.05: 2.1e5, 0.10: 3.1e5}  # Numba prototype, collisions per CPU-second, N = 1e4
TARGET = 1e6  # issue 16: collisions per CPU-second per core at N = 1e4, φ = 0.05


def rate(n, phi, collisions, queue="heap", cell_size=None, seed=1, repeats=1):
    """(collisions/s, events/s, crossings, stale events and events per collision) over about
    ``collisions``; the best of ``repeats`` kernel calls."""
    nu = hd.enskog_collision_rate(hd.Params(n=max(n, 4), phi=phi, expansion=1.0))
    t = 2 * collisions / (n * nu)
    p = hd.Params(n=n, phi=phi, expansion=1.0, queue=queue, cell_size=cell_size,
                  frame_dt=t, t_end=t)
    st = hd.init_state(p, seed)
    warm = p.model_copy(update={"frame_dt": t / 10})
    hd.advance(st, warm, 0, 0, 1)  # compile and decorrelate from the placement
    best = None
    for _ in range(repeats):
        st["stats"][:] = 0
        t0 = time.process_time()
        hd.advance(st, p, 0, 0, 1)
        dt = time.process_time() - t0
        s = st["stats"]
        c = max(s[hd.ST_COLL], 1)
        row = (s[hd.ST_COLL] / dt, s[hd.ST_EVENTS] / dt, s[hd.ST_CROSS] / c,
               s[hd.ST_STALE] / c, s[hd.ST_EVENTS] / c)
        best = row if best is None or row[0] > best[0] else best
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip N = 10^6 and use fewer collisions")
    ap.add_argument("--repeats", type=int, default=2, help="kernel calls per N = 10^4 row (best)")
    args = ap.parse_args()
    print(machine_header("simcore hard-disc EDMD benchmark (benchmarks/harddisc.py)"))
    print()
    coll = 3e5 if args.quick else 1e6
    rows = []
    for phi in (0.05, 0.10):
        for queue in ("heap", "calendar"):
            for cs in (None, 2.0, 4.0):
                r = rate(10_000, phi, coll, queue, cs, repeats=args.repeats)
                rows.append((10_000, phi, queue, cs or "auto", *r))
    if not args.quick:
        for queue in ("heap", "calendar"):
            r = rate(1_000_000, 0.05, 2e6, queue)
            rows.append((1_000_000, 0.05, queue, "auto", *r))
    # references at N = 1e3: cell lists vs one cell (O(N) scan per event)
    for cs, label in ((None, "auto"), (1e9, "one cell (O(N)/event)")):
        r = rate(1000, 0.10, 1e5, "heap", cs)
        rows.append((1000, 0.10, "heap", label, *r))
    print("| N | φ | queue | cell side (σ) | collisions/CPU-s | events/CPU-s | events/collision |"
          " crossings/collision | stale/collision | vs anchor prototype |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for n, phi, q, cs, c, e, x, stale, ev in rows:
        ratio = f"{c / ANCHORS[phi]:.2f}x" if n == 10_000 else "–"
        if n == 10_000 and cs == "auto":
            headline("harddisc", f"collisions/CPU-s, N = 1e4, φ = {phi}, {q}", c, "1/s",
                     TARGET if phi == 0.05 else None)
        print(f"| {n:.0e} | {phi} | {q} | {cs} | {c:.3g} | {e:.3g} | {ev:.2f} | {x:.2f} | "
              f"{stale:.3f} | {ratio} |")
    print()
    best = max(c for n, phi, q, cs, c, *_ in rows if n == 10_000 and phi == 0.05)
    print(f"target (issue 16): {TARGET:.0e} collisions per CPU-second at N = 1e4, φ = 0.05; "
          f"best here {best:.3g} ({best / TARGET:.2f} of it): "
          + ("met" if best >= TARGET else "NOT met"))
    print()
    print("anchors: Numba prototype 2.1e5 (φ = 0.05) / 3.1e5 (φ = 0.10) collisions/CPU-s at N = 1e4;"
          " optimised 3D C code 0.25-0.38e6 / 0.41-0.55e6; pure-Python `billiards` ≈ 86 events/s"
          " at N = 1e3")
    print()
    # S_B for 1e6 particles, 3 values of Δv
    p = hd.Params(n=1_000_000, phi=0.02, interactions=False)
    sample = bz.equilibrium_sample(p, 0)
    bz.cell_entropies(*[a[:1000] for a in sample], (p.L_x, p.L_y), 0.5, 16, 1)
    for cells, ny in (("strips", 1), ("grid", 8)):
        times = []
        for dv in bz.DEFAULT_DV:
            t0 = time.perf_counter()
            bz.cell_entropies(*sample, (p.L_x, p.L_y), dv, 16, ny)
            times.append(time.perf_counter() - t0)
        print(f"S_B of 1e6 particles ({cells}, 16 x {ny} spatial cells): "
              + ", ".join(f"Δv = {dv}: {t:.3f} s" for dv, t in zip(bz.DEFAULT_DV, times))
              + " (target < 0.1 s per Δv)")
    print()
    print("at the end: " + load_note().replace(" at start", ""))


if __name__ == "__main__":
    main()
