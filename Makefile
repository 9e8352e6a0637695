# Memory Mesh. Every target bootstraps its own virtual environment from nothing.
#   make demo   the local demo on embedded defaults
#   make test   lint, types and the default test suite (< 10 minutes on 2 cores)
#   make soak   the long campaigns: 1,000 SIGKILL rounds, 1,000,000 fuzz inputs per decoder,
#               50x property-test examples, 10,000 simulator seeds, 50 seeds per Byzantine
#               kind, 200 bit-flip trials on a node's store, 60 s of connection abuse, the
#               flood test (hours on 2 cores; soak-props, soak-fuzz, soak-node and
#               soak-sim run its parts one at a time)
#   make bench  benchmarks, JSON on stdout

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint soak soak-props soak-fuzz soak-node soak-sim bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/memmesh demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# Long campaigns. Each knob is an environment variable the tests read, so one failing case can be
# re-run alone with the printed seed.
SOAK_ENV := MEMMESH_CRASH_KILLS=1000 MEMMESH_FUZZ_RUNS=1000000 MEMMESH_TEST_SCALE=50 HYPOTHESIS_PROFILE=soak
SOAK_RUN := $(SOAK_ENV) $(BIN)/pytest -q --timeout=3600 -m ""

soak: $(STAMP)
	$(SOAK_RUN) tests

# The same campaigns in parts, to run (and report) one at a time: the whole takes hours.
soak-props: $(STAMP)
	$(SOAK_RUN) tests/core tests/unit tests/attest tests/contract
soak-fuzz: $(STAMP)
	$(SOAK_RUN) tests/fuzz
soak-node: $(STAMP)
	$(SOAK_RUN) tests/integration
soak-sim: $(STAMP)
	$(SOAK_RUN) tests/sim

bench: $(STAMP)
	$(BIN)/memmesh bench store --json
	$(BIN)/memmesh bench core --json
	$(BIN)/memmesh bench sync --json
	$(BIN)/memmesh bench transport --json
	$(BIN)/memmesh bench view --json
	$(BIN)/memmesh bench convergence --json
	$(BIN)/memmesh bench attest --json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
