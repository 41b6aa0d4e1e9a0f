# fogmap: `make run` starts the embedded default, `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test fuzz bench lint schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@# Headless Chromium for the browser tests (Debian's package; never a downloaded build).
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium; the browser tests will fail"
	touch $(STAMP)

run: install
	$(BIN)/fogmap up --dataset digits

test: install
	$(BIN)/python -m pytest -q

# The property tests under fresh random examples, once per seed (make test pins them).
FUZZ_SEEDS ?= 20
PROPERTY_TESTS = $(shell grep -l '^from hypothesis' tests/unit/*.py)
fuzz: install
	for s in $$(seq 1 $(FUZZ_SEEDS)); do echo "hypothesis seed $$s"; \
	  FOGMAP_HYPOTHESIS=fuzz $(BIN)/python -m pytest -q -x -p no:cacheprovider \
	    -m 'not slow' --hypothesis-seed=$$s $(PROPERTY_TESTS) || exit 1; done

# The label-efficiency benchmark (hours on 2 cores; see its docstring for a GPU run and
# quick checks), e.g. make bench BENCH_ARGS="--pool 3000 --budget 60 --seeds 0".
BENCH_ARGS ?= --out out/efficiency
bench: install
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/pip install -q --no-deps 'baal==2.1.0'
	$(BIN)/python tests/benchmarks/bench_label_efficiency.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check services tests
	$(BIN)/mypy services

schemas: install
	$(BIN)/fogmap schemas export

clean:
	rm -rf $(VENV) .fogmap
