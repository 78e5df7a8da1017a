"""A roofline for the Couzin pair loop: how fast can a candidate pair be on this core?

The float32 pair loop (``kernel_precision="float32"``) is compute-bound: its data (the
cell-sorted copies, 28 bytes per agent) sit in L1/L2, so what bounds it is how many
vector instructions a pair needs and how many the core issues per cycle. This script

1. measures the core clock (a dependent chain of 64-bit integer multiply + xor, 3 + 1
   cycles on every Intel core since Nehalem and on AMD Zen: uops.info),
2. compiles the float32 loop afresh and counts, in its assembly, the vector instructions
   of each path through the hot (vectorised) loop, i.e. per 16 pairs with 512-bit
   vectors (the float32 loop asks for them where the CPU has AVX-512) or per 8 with
   256-bit ones — loads that only feed an operand (vmovups/vbroadcastss from memory) go
   to the load ports and are counted apart,
3. times the loop (all pairs, N = 2000 cohesive school, and the dewi case-4 box at
   N = 1000, one thread) and prints the vector instructions it retires per cycle,
   against the issue limit: on Intel cores 3 per cycle for 256-bit vector ALU
   operations (ports 0, 1 and 5), 2 for 512-bit ones (ports 0 and 5; port 1's vector
   unit is fused into port 0's; uops.info); on AMD Zen 2-4 cores 4 for 256-bit ones (four
   FP pipes) and 2 for 512-bit ones (Zen 4 splits them in two), and the floor in ns per
   pair that this limit implies,
4. where ``llvm-mca`` is on PATH (Debian/Ubuntu: the ``llvm`` package) and the loop is one
   straight path (the per-kind loops without AVX-512), runs it on the loop's instructions
   with Numba's CPU (``-mcpu``): LLVM's scheduling model of that core (each instruction's
   measured latency and execution units) gives the cycles per pair with the loop's
   dependencies, and with its execution units alone ("Block RThroughput"). The second
   is the floor of this instruction mix, finer than step 3's count (it knows which
   pipes take which instruction); the first should match the time measured.

    python benchmarks/roofline.py

Numbers go into benchmarks/RESULTS.md with the whole-run ceiling they imply. Where the
loop runs faster than its floor (AMD Zen 1's 128-bit pipes, or an unrolled loop whose
instructions cover more pairs) the script says that no ceiling follows and records no
headline.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp())  # fresh compile: asm kept
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numba  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, headline, machine_header  # noqa: E402

from simcore.models import couzin  # noqa: E402
from simcore.models.couzin import rules  # noqa: E402
from simcore.rng import kernel_key  # noqa: E402

# vector ALU instructions a cycle by float32 lanes: Intel 256-bit ports 0, 1, 5, 512-bit 0, 5;
# AMD Zen 2-4 four 256-bit FP pipes, 512-bit (Zen 4) as two halves
ISSUE_WIDTH = {"intel": {8: 3, 16: 2}, "amd": {8: 4, 16: 2}}
CHAIN_LATENCY = 4  # cycles of imul r64 (3) + xor (1); float add latency varies (2-4)


@numba.njit(cache=False)
def _mul_chain(n, x):
    for i in range(n):
        x = (x * 6364136223846793005) ^ i  # each multiply waits for the last
    return x


def clock_ghz() -> float:
    """Core clock from a dependent multiply-xor chain (best of 5)."""
    n = 100_000_000
    _mul_chain(10, 1)
    best = min(_timed(lambda: _mul_chain(n, 1)) for _ in range(5))
    return CHAIN_LATENCY * n / best / 1e9


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _blocks(asm: str) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    """(labels in order, instructions per label, successor labels per label)."""
    order, body, cur = [], {}, "entry"
    order.append(cur)
    body[cur] = []
    for line in asm.splitlines():
        m = re.match(r"^(\.LBB\S+):", line)
        if m:
            cur = m.group(1)
            order.append(cur)
            body[cur] = []
        elif line.startswith("\t") and not line.strip().startswith((".", "#")):
            body[cur].append(line.strip())
            if line.strip().startswith("j"):  # a branch ends a basic block
                cur = f"{cur}+{len(order)}"
                order.append(cur)
                body[cur] = []
    succ = {}
    for k, label in enumerate(order):
        ins = body[label]
        out = []
        for text in ins:
            m = re.match(r"^j(\w+)\s+(\.LBB\S+)", text)
            if m:
                out.append(m.group(2))
        last = ins[-1] if ins else ""
        if not (last.startswith("jmp") or last.startswith("ret")) and k + 1 < len(order):
            out.append(order[k + 1])  # fall through
        succ[label] = out
    return order, body, succ


def _is_load_only(text: str) -> bool:
    op = text.split()[0]
    return (op.startswith(("vmovup", "vmovap", "vbroadcast", "vpbroadcast", "vmovs"))
            and "(%" in text.split(",")[0])


def _vector_ops(ins: list[str]) -> tuple[int, int]:
    """(vector ALU instructions, vector loads) in a list of instructions."""
    alu = loads = 0
    for text in ins:
        op = text.split()[0]
        if not (op.startswith("v") or op.startswith("k")):
            continue
        if _is_load_only(text):
            loads += 1
        else:
            alu += 1
    return alu, loads


def _hot_loop(asm: str):
    """(labels in order, instructions per label, successors per label, the loop's first
    label, the loop's labels) of the vectorised pair loop: the loop holding the packed
    reciprocal square root."""
    order, body, succ = _blocks(asm)
    pred = {label: [] for label in order}
    for a, outs in succ.items():
        for b in outs:
            pred.setdefault(b, []).append(a)
    start = next(label for label in order
                 if any(re.match(r"vrsqrt(14)?ps\s", t) for t in body[label]))

    def reach(first, edges):
        seen, todo = {first}, [first]
        while todo:
            for nxt in edges.get(todo.pop(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    # the vector loop's blocks: those on a cycle through ``start`` that stay within blocks
    # using vector registers (the scalar cell and agent loops around it use none)
    vector = {label for label in order
              if any(re.search(r"%[yz]mm", t) for t in body[label])
              or all(t.startswith(("j", "cmp", "test", "add", "inc")) for t in body[label])}
    inner_succ = {a: [b for b in outs if b in vector] for a, outs in succ.items() if a in vector}
    inner_pred = {a: [b for b in outs if b in vector] for a, outs in pred.items() if a in vector}
    loop = reach(start, inner_succ) & reach(start, inner_pred)
    return order, body, succ, start, loop


def hot_loop_paths(asm: str) -> list[tuple[int, int]]:
    """(vector ALU, vector load) instructions of every path once around the vectorised
    pair loop."""
    order, body, succ, start, loop = _hot_loop(asm)
    paths = []

    def walk(label, seen, alu, loads):
        a, ld = _vector_ops(body[label])
        alu, loads = alu + a, loads + ld
        for nxt in succ[label]:
            if nxt == start:
                paths.append((alu, loads))
            elif nxt in loop and nxt not in seen:
                walk(nxt, seen | {nxt}, alu, loads)

    walk(start, {start}, 0, 0)
    return sorted(set(paths))


def hot_loop_body(asm: str) -> str | None:
    """The vectorised pair loop's instructions once around, as assembly text, where the
    loop is one straight path (its blocks run in order, every one every iteration: the
    per-kind loops without AVX-512); None where it branches inside."""
    order, body, succ, start, loop = _hot_loop(asm)
    blocks = [label for label in order if label in loop]
    if blocks[0] != start or any(
            [nxt for nxt in succ[a] if nxt in loop] != [b] for a, b in zip(blocks, blocks[1:])):
        return None
    return "\n".join(text for label in blocks for text in body[label]) + "\n"


def llvm_mca(loop: str, cpu: str, iterations: int = 500) -> tuple[float, float] | None:
    """(cycles per iteration with dependencies, cycles per iteration from the execution
    units alone: "Block RThroughput") of ``loop`` on the LLVM CPU ``cpu``, as LLVM's
    scheduling model for it (latencies and throughputs measured per instruction) predicts
    them; None without ``llvm-mca`` on PATH (Debian/Ubuntu: the ``llvm`` package) or a
    model of that CPU."""
    import shutil
    import subprocess

    exe = shutil.which("llvm-mca")
    if exe is None:
        return None
    done = subprocess.run([exe, f"-mcpu={cpu}", f"-iterations={iterations}"], input=loop,
                          capture_output=True, text=True)
    total = re.search(r"Total Cycles:\s+(\d+)", done.stdout)
    block = re.search(r"Block RThroughput:\s+([\d.]+)", done.stdout)
    if done.returncode != 0 or "not a recognized processor" in done.stderr or not total \
            or not block:
        return None
    return int(total.group(1)) / iterations, float(block.group(1))


def compiled_loop_asm() -> dict[str, str]:
    """Assembly of the float32 pair loop by case: ``"open"`` (rule couzin2002, cell image
    shifts: the cohesive school) and ``"rounding"`` (rule dewi, per-pair rounding: the dewi
    box). With AVX-512 one loop inside the serial decision kernel serves both (its paths
    differ); without, each rule and boundary kind is a function of its own
    (``rules._pair_sums_*``)."""
    p = couzin.Params(n=64, rule="dewi", boundary="periodic", box=35.0, r_o=12.0, r_a=20.0,
                      kernel_precision="float32")
    state = couzin.init_state(p, 1)
    couzin.advance(state, p, kernel_key(1), 0, 1, parallel=False)
    if rules._FLOAT_MASKS:
        funcs = {"open": rules._pair_sums_couzin_shifts, "rounding": rules._pair_sums_dewi_rounding}
    else:
        funcs = {"open": rules._decide_range, "rounding": rules._decide_range}
    texts = {}
    for func in set(funcs.values()):
        asm = func.inspect_asm()
        if not asm:
            raise RuntimeError("no assembly: the kernel came from Numba's cache; run with a "
                               "fresh NUMBA_CACHE_DIR")
        texts[func] = next(text for sig, text in asm.items() if "float32" in str(sig))
    return {case: texts[func] for case, func in funcs.items()}


def ns_per_pair(params: couzin.Params, steps: int) -> float:
    """Best of 5: seconds per step / N² (all pairs), one thread, serial kernel."""
    state = couzin.init_state(params, 789)
    key = kernel_key(789)
    couzin.advance(state, params, key, 0, 1, all_pairs=True, parallel=False)
    best = math.inf
    for _ in range(5):
        fresh = {k: v.copy() for k, v in state.items() if not k.startswith("_")}
        fresh["_work"] = state["_work"]
        best = min(best, _timed(lambda s=fresh: couzin.advance(
            s, params, key, 1, steps, all_pairs=True, parallel=False)))
    return best / steps / params.n ** 2 * 1e9


def compiled_cpu() -> str:
    """The LLVM CPU name Numba compiles for (``NUMBA_CPU_NAME``, else this host's)."""
    from llvmlite import binding

    return numba.config.CPU_NAME or binding.get_host_cpu_name()


def _report_mca(asm: str, lanes: int, cycles: float, ghz: float) -> None:
    """Print llvm-mca's cycles per pair for the loop in ``asm`` against ``cycles`` measured."""
    body, cpu = hot_loop_body(asm), compiled_cpu()
    mca = llvm_mca(body, cpu) if body is not None else None
    if mca is None:
        print("  llvm-mca: not run (" + ("the loop branches inside" if body is None else
              "no llvm-mca on PATH, or no model of this CPU") + ")")
        return
    simulated, units = (c / lanes for c in mca)
    print(f"  llvm-mca (-mcpu={cpu}): {simulated:.2f} cycles per pair with the "
          f"loop's dependencies = {simulated / ghz:.3f} ns (measured: {cycles / simulated:.2f}x "
          f"that); its execution units alone {units:.2f} cycles = {units / ghz:.3f} ns per "
          "pair, the floor of this instruction mix")


def main(argv=None) -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)  # no options
    print(machine_header("simcore Couzin roofline (benchmarks/roofline.py)"))
    ghz = clock_ghz()
    print(f"core clock from a dependent multiply-xor chain: {ghz:.2f} GHz")
    asms = compiled_loop_asm()
    asm = asms["open"]
    lanes = 16 if "zmm" in asm and re.search(r"vrsqrt14ps\s+%zmm", asm) else 8
    paths = {case: hot_loop_paths(text) for case, text in asms.items()}
    for case, found in paths.items():
        print(f"vectorised pair loop ({case}): {lanes} pairs per vector; vector instructions "
              f"per iteration on each path (ALU + loads): "
              + ", ".join(f"{a} + {ld}" for a, ld in found))
    # (params, steps, the loop and path the case takes: one loop's paths are sorted, the
    # open couzin2002 rule the shortest, the dewi rule with per-pair rounding the longest)
    cases = {
        "cohesive school N = 2000 (rule couzin2002, open)": (couzin.Params(
            n=2000, r_r=1.0, r_o=6.0, r_a=14.0, noise=0.0,
            init_size=0.95 * 14.0 / math.sqrt(3), kernel_precision="float32"), 5, ("open", 0)),
        "dewi case-4 box N = 1000 (rule dewi, periodic, rounding)": (couzin.Params(
            **{k: v for k, v in couzin.PRESETS["dewi_highly_parallel"].items()
               if k not in ("steps", "seed")} | {"n": 1000, "box": 35.0 * 4 ** (1 / 3),
                                                 "kernel_precision": "float32"}), 20, ("rounding", -1)),
    }
    issue = ISSUE_WIDTH["amd" if "AMD" in cpu_model() else "intel"][lanes]
    for label, (params, steps, (loop, path)) in cases.items():
        ns = ns_per_pair(params, steps)
        alu = paths[loop][path][0]
        cycles = ns * ghz
        floor = alu / lanes / issue
        print(f"{label}: {ns:.3f} ns per pair = {cycles:.2f} cycles; its path's {alu} ALU "
              f"instructions per {lanes} pairs retire at {alu / lanes / cycles:.2f} per cycle "
              f"(issue limit {issue}: floor {floor:.2f} cycles = "
              f"{floor / ghz:.3f} ns per pair, {floor / cycles:.0%} of the time measured)")
        _report_mca(asms[loop], lanes, cycles, ghz)
        if floor > cycles:  # the measured loop beats the model's floor: the model is wrong
            print(f"  -> the model does not describe this core: the loop retires more than "
                  f"{issue} vector instructions per cycle (the limit assumed for this "
                  "vendor's cores; AMD Zen 1 has four 128-bit FP pipes, and LLVM may unroll "
                  "the loop so that the instructions counted cover more pairs); no floor or "
                  "ceiling follows from it here")
            continue
        headline("couzin roofline", f"float32 pair loop, {label.split(' (')[0]}: share of the "
                 "issue limit reached", 100 * floor / cycles, "%")


if __name__ == "__main__":
    main()
