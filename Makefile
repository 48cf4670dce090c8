# The two commands of the README: `make demo` and `make test`. Each creates .venv and installs the
# project with its dev extras when missing (or when pyproject.toml changed), so a fresh machine with
# only Python >= 3.11 needs nothing else.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit bench soak clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pdm-edge needs Python >= 3.11; set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m simulators.demo

test: lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest

# Long runs of the reliability and security suites (docs/reliability.md): 100 kill -9 rounds of agent
# and bridge, 10,000 fuzz batches (120,000 hostile payloads) over MQTT. Hours on 2 cores; seeds from
# PDM_CHAOS_SEED (default 20260105). Override SOAK_KILLS / SOAK_FUZZ for shorter or longer runs.
SOAK_KILLS ?= 100
SOAK_FUZZ ?= 10000
soak: $(STAMP)
	PDM_CHAOS_KILLS=$(SOAK_KILLS) PDM_FUZZ_EXAMPLES=$(SOAK_FUZZ) $(VENV)/bin/pytest tests/chaos tests/security \
		--timeout=43200 -q -rxXf --durations=20

bench: $(STAMP)
	$(PY) bench/detection.py
	$(PY) bench/bridge.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
