"""The summary table of ``make bench``: every benchmark's headline numbers against their
targets, also written as JSON so that a later run can be compared with this one.

    .venv/bin/python benchmarks/summary.py LINES.jsonl [--json OUT.json] [--compare OLD.json]

LINES.jsonl holds the records that the benchmark scripts append through
``_common.headline`` while $SIMCORE_BENCH_SUMMARY names that file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lines", type=Path)
    parser.add_argument("--json", type=Path, help="write the records as one JSON file")
    parser.add_argument("--compare", type=Path, help="an earlier --json file to compare with")
    args = parser.parse_args(argv)
    if not args.lines.exists():
        print(f"{args.lines}: no headline was recorded", file=sys.stderr)
        return 1
    records = [json.loads(line) for line in args.lines.read_text().splitlines() if line.strip()]
    old = {}
    if args.compare and args.compare.exists():
        old = {(r["benchmark"], r["what"]): r for r in json.loads(args.compare.read_text())}
    rows = []
    for r in records:
        target = "-" if r["target"] is None else (
            f"{'>=' if r['higher_is_better'] else '<='} {r['target']:.4g}")
        verdict = "-" if r["met"] is None else ("met" if r["met"] else "NOT met")
        before = old.get((r["benchmark"], r["what"]))
        rows.append([r["benchmark"], r["what"], f"{r['value']:.4g} {r['unit']}", target, verdict,
                     "-" if before is None else f"{before['value']:.4g}"])
    print("\n## make bench summary\n")
    print(table(["benchmark", "headline", "value", "target", "verdict",
                 f"previous ({args.compare.name})" if args.compare else "previous"], rows,
                align="lllllr"))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n")
        print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
