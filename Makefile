# callbroker — two commands on a fresh machine: `make run` and `make test`.
# The project's directory, wherever make is typed: `make -f ~/cb/Makefile run` from another directory read
# pyproject.toml, .venv and var there ("No rule to make target 'pyproject.toml'"). Every recipe runs in
# ROOT, as after `make -C ~/cb`; a relative VENV is relative to it.
ROOT   := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(if $(filter /%,$(VENV)),$(VENV),$(ROOT)/$(VENV))/.installed
IN_ROOT := cd '$(ROOT)' &&

.PHONY: run test soak install bench clean

$(STAMP): $(ROOT)/pyproject.toml
	@$(IN_ROOT) { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); }
	$(IN_ROOT) $(BIN)/pip install --quiet --upgrade pip
	$(IN_ROOT) $(BIN)/pip install --quiet -e '.[test]'
	@touch '$(STAMP)'

install: $(STAMP)

## make run: install, migrate the embedded SQLite database, load the demo network, serve and feed calls
## (options of `callbroker run` through RUN_ARGS, e.g. make run RUN_ARGS="--port 8080 --calls 20")
RUN_ARGS ?=
# the directory make was typed in (make -C changes it): run's last line names the program as it is typed there
run: export CALLBROKER_SHELL_DIR := $(PWD)
run: $(STAMP)
	$(IN_ROOT) $(BIN)/callbroker run $(RUN_ARGS)

## make test: install and run the whole suite
test: $(STAMP)
	$(IN_ROOT) $(BIN)/python -m pytest

## make soak: the long reliability run (10,000 calls on two nodes, faults) — see docs/reliability.md
soak: $(STAMP)
	$(IN_ROOT) CALLBROKER_SOAK_CALLS=$${CALLBROKER_SOAK_CALLS:-10000} $(BIN)/python -m pytest tests/reliability \
		-p no:randomly

bench: $(STAMP)
	$(IN_ROOT) $(BIN)/callbroker bench

clean:
	$(IN_ROOT) rm -rf $(VENV) var build *.egg-info src/*.egg-info
