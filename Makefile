# callbroker — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test soak install bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## make run: install, migrate the embedded SQLite database, load the demo network, serve and feed calls
## (options of `callbroker run` through RUN_ARGS, e.g. make run RUN_ARGS="--port 8080 --calls 20")
RUN_ARGS ?=
# the directory make was typed in (make -C changes it): run's last line names the program as it is typed there
run: export CALLBROKER_SHELL_DIR := $(PWD)
run: $(STAMP)
	$(BIN)/callbroker run $(RUN_ARGS)

## make test: install and run the whole suite
test: $(STAMP)
	$(BIN)/python -m pytest

## make soak: the long reliability run (10,000 calls on two nodes, faults) — see docs/reliability.md
soak: $(STAMP)
	CALLBROKER_SOAK_CALLS=$${CALLBROKER_SOAK_CALLS:-10000} $(BIN)/python -m pytest tests/reliability -p no:randomly

bench: $(STAMP)
	$(BIN)/callbroker bench

clean:
	rm -rf $(VENV) var build *.egg-info src/*.egg-info
