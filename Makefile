# Quick start: `make train` trains on the real Fashion-MNIST, `make test` runs the tests.
# Both set up first: a virtual environment with the package, and the data set.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -q -y

.PHONY: setup data train test bench clean

setup: $(VENV)/.warm

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The CPU kernels compiled into Numba's cache once after installing, and again when their sources
# change, so that the first `make train` trains at full speed (python -m fastsoftmax.warmup).
$(VENV)/.warm: $(VENV)/.installed $(wildcard fastsoftmax/backends/cpu/*.py) $(wildcard fastsoftmax/reference/*.py)
	$(BIN)/python -m fastsoftmax.warmup
	touch $@

# Debian's dataset-fashion-mnist; without apt the loader downloads the files instead.
data:
	@[ -e $(DATA)/train-images-idx3-ubyte.gz ] || { \
	  echo "installing dataset-fashion-mnist with apt-get"; \
	  $(APT) install dataset-fashion-mnist >/dev/null 2>&1 || \
	  { $(APT) update >/dev/null && $(APT) install dataset-fashion-mnist >/dev/null; } || \
	  echo "could not install dataset-fashion-mnist; fastsoftmax will try to download the files"; }

train: setup data
	$(BIN)/python -m fastsoftmax.train $(ARGS)

# The layer contracts first (import-linter, pyproject.toml): a second, then the suite.
test: setup data
	$(BIN)/lint-imports --no-logo
	$(BIN)/python -m pytest

# fastsoftmax against NumPy, PyTorch and JAX in one run; report.py writes
# bench/results/<date>-<cpu|gpu>-<N>core.{json,md,png} naming the machine.
bench: setup data
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m pytest bench -o python_files='bench_*.py' -p no:cacheprovider --benchmark-json=.benchmarks/bench.json
	$(BIN)/python bench/report.py .benchmarks/bench.json --out bench/results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
	find . -name __pycache__ -prune -exec rm -rf {} +
