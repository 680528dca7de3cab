# Two commands matter: `make run` and `make test`. Both set everything up first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= telephony-config/engine.toml
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test lint typecheck unit bench bench-pacing host-deps sandbox clean

host-deps:
	@scripts/host-deps

$(BIN)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory host-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed

sandbox: venv
	scripts/asterisk-sandbox start

run: venv sandbox
	$(BIN)/python -m engine check-config $(CONFIG)
	@scripts/run-banner $(CONFIG)
	$(BIN)/python -m engine run --config $(CONFIG)

lint: venv
	$(BIN)/ruff check engine tests scripts bench
	$(BIN)/ruff format --check engine tests bench
	$(BIN)/mypy

test: lint sandbox
	PY=$(BIN)/python scripts/run-tests

unit: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider tests -m 'not asterisk'

bench: venv sandbox
	$(BIN)/python -m bench

bench-pacing: venv
	$(BIN)/python -m bench.pacing

clean:
	rm -rf $(VENV) var reports .mypy_cache .ruff_cache

# The driver contract suite against a real FreeSWITCH instead of the fake:
#   ENGINE_TEST_FREESWITCH=host:port:password make test-freeswitch
# (docs/contract-suite.md; the switch needs telephony-config/freeswitch/ loaded).
.PHONY: test-freeswitch
test-freeswitch: venv
	@test -n "$$ENGINE_TEST_FREESWITCH" || { echo "set ENGINE_TEST_FREESWITCH=host:port:password" >&2; exit 2; }
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/contract -m 'not asterisk'

# The container image (deploy/Containerfile) from Debian's mirror and PyPI alone, no container
# registry: root, mmdebstrap and a docker daemon (docs/production.md "Container"). Minutes, so
# not part of `make test`; tests/unit/test_containerfile.py checks the definition instead.
.PHONY: image image-check
image:
	scripts/build-image

# The same, then run the image: --help, check-config, doctor, `run` until healthy, docker stop.
image-check:
	scripts/build-image --check
