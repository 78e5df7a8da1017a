"""docs/interop.md runs as written: its bash block makes the example files with the real
`simcore` command, then every python block is executed (each in a fresh namespace, in
the folder of those files). A block whose reader is not installed is skipped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "interop.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(), flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
BASH = [code for lang, code in BLOCKS if lang == "bash"]
READERS = {"MDAnalysis": "MDAnalysis", "mdtraj": "mdtraj", "ase": "ase", "ovito": "ovito",
           "freud": "freud", "dask": "dask", "gsd": "gsd"}


def _title(code: str) -> str:
    imports = re.findall(r"^(?:import|from) (\w+)", code, flags=re.M)
    return "-".join(dict.fromkeys(i for i in imports if i not in ("numpy", "json")))


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs_interop")
    for block in BASH:
        for line in block.strip().splitlines():
            args = line.split()
            assert args[0] == "simcore", line
            proc = subprocess.run([sys.executable, "-m", "simcore.cli", *args[1:]], cwd=folder,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
    return folder


def test_doc_has_a_recipe_per_tool():
    text = DOC.read_text()
    for tool in ("xarray", "dask", "OVITO", "MDAnalysis", "MDTraj", "ASE", "freud", "VMD"):
        assert f"## {tool}" in text, tool
    assert len(PYTHON) >= 10 and BASH


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("code", PYTHON, ids=[f"{k}-{_title(c)}" for k, c in enumerate(PYTHON)])
def test_python_block_runs(code, example_dir, monkeypatch):
    for module in re.findall(r"^(?:import|from) (\w+)", code, flags=re.M):
        if module in READERS:
            pytest.importorskip(READERS[module])
    if "chunks={}" in code:
        pytest.importorskip("dask")
    monkeypatch.chdir(example_dir)
    exec(compile(code, f"{DOC.name} block", "exec"), {"__name__": "__docs__"})
