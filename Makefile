# Each target builds its own virtual environment, so both work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Single-threaded BLAS/FFT by default: benchmarks compare one core with one core.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test bench lint clean

$(VENV)/.stamp-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[$*]"
	touch $@

demo: $(VENV)/.stamp-numba,plot,server
	$(PY) -m amser_dsp.demo

test: $(VENV)/.stamp-numba,server,test
	$(PY) -m pytest -q

bench: $(VENV)/.stamp-numba,bench
	mkdir -p out
	$(PY) -m pytest benchmarks -q --benchmark-json=out/bench.json
	$(PY) benchmarks/report.py out/bench.json

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
