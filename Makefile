# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# pip byte-compiles the ~11 000 installed modules one at a time (~60 s on 2 cores);
# compileall does it on every core (~35 s). Done here rather than left to the first
# import: with PYTHONDONTWRITEBYTECODE set, each test process would compile jax & co.
# again. A file that is not valid Python (PySide6 ships templates) is skipped, as pip
# skips it.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --no-compile -e ".[test,cluster,lint,interop]"
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --out demo_output

# the test files run in parallel on every core (pytest-xdist): a fresh clone's Numba and
# XLA compilations, most of a first run's time, then overlap
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow -n auto --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .

BENCH_LINES := benchmarks/.bench_lines.jsonl
bench: $(STAMP)
	rm -f $(BENCH_LINES)
	export SIMCORE_BENCH_SUMMARY=$(abspath $(BENCH_LINES)); \
	$(PY) benchmarks/couzin.py && \
	$(PY) benchmarks/roofline.py && \
	$(PY) benchmarks/active.py && \
	$(PY) benchmarks/sweep.py && \
	$(PY) benchmarks/harddisc.py && \
	$(PY) benchmarks/score.py && \
	$(PY) benchmarks/threads_under_load.py && \
	$(PY) benchmarks/store.py && \
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/summary.py $(BENCH_LINES) --json benchmarks/bench_summary.json \
	  $(if $(wildcard benchmarks/bench_summary.json),--compare benchmarks/bench_summary.json)
	rm -f $(BENCH_LINES)

clean:
	rm -rf demo_output .pytest_cache
