# trainlab — the two set-up commands of the README: `make demo` and `make test`.
# Both start from a bare Python: they create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Development and CI pin torch through constraints.txt (the CPU wheel on this machine's disk).
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check --upgrade pip setuptools wheel

# Stamps record what was installed; they are rebuilt when pyproject.toml or the pins change.
$(VENV)/.stamp-core: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.stamp-dev: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e ".[dev]"
	touch $(VENV)/.stamp-core $@

# The user's first ten minutes: the lecture's claims measured (lecture.html), then a CNN
# trained on MNIST-1D end to end (its report.html); both paths are printed.
demo: $(VENV)/.stamp-core
	$(BIN)/trainlab lecture --quick --out runs/lecture
	$(BIN)/trainlab fit examples/mnist1d_cnn.yaml

# A throwaway PostgreSQL (scripts/postgres.sh) serves the tests that need one through
# TRAINLAB_TEST_POSTGRES, and is stopped on the way out, pass, fail or Ctrl-C. If it cannot
# start, those tests skip and the rest run as ever. Likewise headless Chromium for the
# browser tests (scripts/chromium.sh, which installs Debian's package when it is missing)
# through TRAINLAB_TEST_CHROMIUM.
test: $(VENV)/.stamp-dev
	@pgdir=$$(mktemp -d /tmp/trainlab-pg.XXXXXX); \
	trap 'bash scripts/postgres.sh stop "$$pgdir"' EXIT; trap 'exit 130' INT TERM; \
	if url=$$(bash scripts/postgres.sh start "$$pgdir"); then \
		echo "PostgreSQL for the tests: $$url"; export TRAINLAB_TEST_POSTGRES="$$url"; \
	else \
		echo "warning: scripts/postgres.sh could not start PostgreSQL: its tests will skip" >&2; \
	fi; \
	if chromium=$$(bash scripts/chromium.sh); then \
		echo "Chromium for the tests: $$chromium"; export TRAINLAB_TEST_CHROMIUM="$$chromium"; \
	else \
		echo "warning: scripts/chromium.sh found no Chromium: the browser tests will skip" >&2; \
	fi; \
	$(BIN)/python -m pytest -q

# ruff, and the layers of ../shared/DESIGN.md (the import-linter contracts in pyproject.toml:
# no upward import, no cycle, imports inside functions included).
lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

$(VENV)/.stamp-bench: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e ".[bench]"
	touch $(VENV)/.stamp-core $@

# Every benchmark in bench/ that exists, in turn (bench/examples.py is not one: it trains
# every example over three seeds for docs/results.md). The bench extra brings Lightning and
# Keras for bench/train_loop.py.
BENCHES := $(filter-out bench/examples.py,$(wildcard bench/*.py))
bench: $(VENV)/.stamp-bench
	@set -e; for script in $(BENCHES); do \
		echo "== $$script"; $(BIN)/python $$script; \
	done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
