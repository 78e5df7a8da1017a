"""README.md and docs/**/*.md run as written: every ``python`` and ``bash`` block of a
page is executed in order, in one fresh folder per page, with the real ``simcore`` and
``scoremodels`` commands (each python block in a fresh namespace).

Conventions in the markdown (HTML comments, invisible on GitHub), on the lines just
before a block:

* ``<!-- docs-test: replace "OLD" -> "NEW" -->`` (repeatable, JSON strings): run the
  block with OLD replaced by NEW, to shrink a long run (OLD must occur in the block);
* ``<!-- docs-test: skip: REASON -->``: do not run the block (rare: at most
  ``MAX_SKIPPED`` in all pages, each with a reason).

A ``toml`` block whose first line is ``# NAME.toml`` is written to NAME.toml before the
page's blocks run (a page may use a file that it shows later). A python block whose
optional reader (``READERS``) is not installed is skipped. Pages that take more than a
few seconds run in the slow tier (``SLOW``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         *sorted((ROOT / "docs" / "models").glob("*.md"))]
SLOW = {"README.md"}
MAX_SKIPPED = 2
READERS = {"MDAnalysis": "MDAnalysis", "mdtraj": "mdtraj", "ase": "ase", "ovito": "ovito",
           "freud": "freud", "dask": "dask", "gsd": "gsd"}
COMMANDS = {"simcore": ["-m", "simcore.cli"], "scoremodels": ["-m", "scoremodels"],
            "python": []}
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
_STRING = r'"(?:[^"\\]|\\.)*"'


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    skip: str | None = None
    replace: list = field(default_factory=list)

    def runnable_code(self) -> str:
        code = self.code
        for old, new in self.replace:
            assert old in code, f"{self.where}: stale docs-test directive, {old!r} not in block"
            code = code.replace(old, new)
        return code

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page with the docs-test directives just before each."""
    text = page.read_text()
    out = []
    for m in _FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").split("\n")
        directives = []
        while before and _DIRECTIVE.fullmatch(before[-1].strip()):
            directives.insert(0, _DIRECTIVE.fullmatch(before[-1].strip()).group(1))
            before.pop()
        block = Block(page.name, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
        for d in directives:
            if d.startswith("skip:"):
                block.skip = d[len("skip:"):].strip()
                assert block.skip, f"{block.where}: a skipped block needs a reason"
            else:
                r = re.fullmatch(rf"replace\s+({_STRING})\s*->\s*({_STRING})", d)
                assert r, f"{block.where}: unknown docs-test directive {d!r}"
                block.replace.append((json.loads(r.group(1)), json.loads(r.group(2))))
        out.append(block)
    return out


def _bash(block: Block, folder: Path) -> None:
    code = block.runnable_code().replace("\\\n", " ")
    for line in code.splitlines():
        args = shlex.split(line, comments=True)
        if not args:
            continue
        assert args[0] in COMMANDS, f"{block.where}: cannot run {line!r} (mark the block)"
        env = dict(os.environ, MPLBACKEND="Agg", SIMCORE_PROGRESS_SECONDS="3600")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        proc = subprocess.run([sys.executable, *COMMANDS[args[0]], *args[1:]], cwd=folder,
                              capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, (block.where, line, proc.stdout[-2000:], proc.stderr[-3000:])


def _python(block: Block, folder: Path, skipped: list) -> None:
    code = block.runnable_code()
    for module in re.findall(r"^\s*(?:import|from) (\w+)", code, flags=re.M):
        if module in READERS and importlib.util.find_spec(READERS[module]) is None:
            skipped.append(f"{block.where} ({module} not installed)")
            return
    if "chunks={}" in code and importlib.util.find_spec("dask") is None:
        skipped.append(f"{block.where} (dask not installed)")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import warnings

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            # as a script's main module: a block's `if __name__ == "__main__":` part runs too
            exec(compile(code, block.where, "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(cwd)
        plt.close("all")
    # a page shows nothing its own checks warn about (a biased estimate, a bad setting)
    ours = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert not ours, (block.where, ours)


def run_page(page: Path, folder: Path) -> list[str]:
    """Run every block of ``page`` in ``folder``; return the blocks skipped for a missing
    optional reader."""
    skipped: list[str] = []
    page_blocks = blocks(page)
    for block in page_blocks:
        first = block.code.split("\n", 1)[0].strip()
        if block.lang == "toml" and re.fullmatch(r"#\s*[\w.-]+\.toml", first) and not block.skip:
            (folder / first.lstrip("#").strip()).write_text(block.runnable_code())
    for block in page_blocks:
        if block.skip:
            continue
        if block.lang == "bash":
            _bash(block, folder)
        elif block.lang == "python":
            _python(block, folder, skipped)
    return skipped


def _param(page: Path):
    marks = [pytest.mark.slow] if page.name in SLOW else []
    return pytest.param(page, id=str(page.relative_to(ROOT)), marks=marks)


def _runnable(page: Path) -> bool:
    return any(b.lang in ("python", "bash") and not b.skip for b in blocks(page))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("page", [_param(p) for p in PAGES if _runnable(p)])
def test_page_runs_as_written(page, tmp_path):
    skipped = run_page(page, tmp_path)
    if skipped:
        print("skipped (optional reader missing):", *skipped, sep="\n  ")


def test_skipped_blocks_are_rare_and_justified():
    skipped = [b for p in PAGES for b in blocks(p) if b.skip]
    assert len(skipped) <= MAX_SKIPPED, [b.where for b in skipped]
    for b in skipped:
        assert len(b.skip) > 20, f"{b.where}: say why the block cannot run"


def test_interop_doc_has_a_recipe_per_tool():
    text = (ROOT / "docs" / "interop.md").read_text()
    for tool in ("xarray", "dask", "OVITO", "MDAnalysis", "MDTraj", "ASE", "freud", "VMD"):
        assert f"## {tool}" in text, tool
    interop = blocks(ROOT / "docs" / "interop.md")
    assert sum(b.lang == "python" for b in interop) >= 10
    assert any(b.lang == "bash" for b in interop)
