# The two commands of the README: `make demo` and `make test`. Each creates .venv and installs the
# project with its dev extras when missing (or when pyproject.toml changed), so a fresh machine with
# only Python >= 3.11 needs nothing else. pip shows its progress: the first install takes minutes.
#
# `make test` also installs, on Debian and as root, the system packages the deployment tests run
# (Mosquitto, openssl, Debian's python3.11 that the gateway package runs on, systemd's tools, strace
# for the power-loss suite), and
# refreshes apt's lists once so that tests can fetch Debian's stock mosquitto.conf and promtool
# (`apt-get download`, nothing installed). Elsewhere it says what is missing and those tests skip.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SYSTEM_PACKAGES := mosquitto mosquitto-clients openssl python3.11 systemd dpkg strace

.PHONY: demo test lint typecheck unit bench soak clean system-deps deb

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pdm-edge needs Python >= 3.11; set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar on --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		[ -z "$$missing" ] || echo "WARNING: missing system packages:$$missing; the tests that need them skip" \
			"(as root on Debian: apt-get install$$missing)"; exit 0; fi; \
	if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || [ -n "$$missing" ]; then \
		echo "apt-get update (package lists for Debian's stock mosquitto.conf and promtool)"; apt-get update -q; fi; \
	if [ -n "$$missing" ]; then echo "installing system packages for the tests:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; fi

demo: $(STAMP)
	$(PY) -m simulators.demo

test: system-deps lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest

# Long runs of the reliability and security suites (docs/reliability.md): 100 kill -9 rounds of agent
# and bridge, 10,000 fuzz batches (120,000 hostile payloads) over MQTT, the broker down 5 minutes,
# a desk down 24 h (accelerated 300x: 288 s), every crash image of 400 operations per durable store.
# Hours on 2 cores; seeds from PDM_CHAOS_SEED (default 20260105). Override SOAK_KILLS / SOAK_FUZZ /
# SOAK_BROKER_DOWN_S / SOAK_DESK_OUTAGE_H / SOAK_POWER_OPS for shorter or longer runs.
SOAK_KILLS ?= 100
SOAK_FUZZ ?= 10000
SOAK_BROKER_DOWN_S ?= 300
SOAK_DESK_OUTAGE_H ?= 24
SOAK_POWER_OPS ?= 400
soak: $(STAMP)
	PDM_CHAOS_KILLS=$(SOAK_KILLS) PDM_FUZZ_EXAMPLES=$(SOAK_FUZZ) PDM_CHAOS_BROKER_DOWN_S=$(SOAK_BROKER_DOWN_S) \
		PDM_CHAOS_DESK_OUTAGE_H=$(SOAK_DESK_OUTAGE_H) PDM_POWER_OPS=$(SOAK_POWER_OPS) PDM_POWER_CUTS=0 \
		$(VENV)/bin/pytest tests/chaos tests/security \
		--timeout=43200 -q -rxXf --durations=20

bench: $(STAMP)
	$(PY) bench/detection.py
	$(PY) bench/bridge.py

deb: $(STAMP)
	$(PY) packaging/build_deb.py --arch amd64 --arch arm64 --out dist

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
