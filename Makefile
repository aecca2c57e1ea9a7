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

# The optimizers on a narrow valley, then a CNN trained on MNIST-1D end to end.
demo: $(VENV)/.stamp-core
	$(BIN)/trainlab demo
	$(BIN)/trainlab fit examples/mnist1d_cnn.yaml

test: $(VENV)/.stamp-dev
	$(BIN)/python -m pytest -q

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(VENV)/.stamp-core
	$(BIN)/python bench/optim_step.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
