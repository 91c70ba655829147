# make demo: run a shipped example end to end.  make test: install everything and run every test.
VENV := .venv
PY := $(VENV)/bin/python
# bats 1.13 declares its executable only under "directories" in package.json, which npm 11 does not link into node_modules/.bin
BATS := node_modules/bats/bin/bats

.PHONY: install test pytest bats lint demo bench soak clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,dask]'
	$(PY) -m compileall -q awoc_scripts  # bytecode now, even where PYTHONDONTWRITEBYTECODE is set
	scripts/make-shims.sh >/dev/null
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# wheels of awoc's dependencies, so that the plugin's first-use install runs offline in the tests
WHEELS := build/wheels/.built
$(WHEELS): pyproject.toml $(VENV)/.installed
	$(PY) -m pip wheel --quiet -w build/wheels . setuptools
	touch $@

# AWOC_CLAUDE_VERSION=X.Y.Z make test: the same suite against another claude CLI (npm installs it under build/)
test: install node_modules/.installed $(WHEELS) lint pytest bats

pytest: install node_modules/.installed $(WHEELS)
	$(PY) -m pytest

bats: install node_modules/.installed
	$(BATS) tests/bats

demo: install
	$(VENV)/bin/delegate-parallel run examples/inspect-repo.json
	@echo "The report is in .awoc/parallel/runs/$$(cat .awoc/parallel/current)/report.md"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# make bench: every benchmark, one table, bench/results.json (about 6 minutes). BENCH_ARGS=--quick for a smoke run.
bench: install
	command -v parallel >/dev/null || (apt-get update && apt-get install -y parallel)
	command -v make >/dev/null || (apt-get update && apt-get install -y make)
	$(PY) bench/run_all.py $(BENCH_ARGS)

# make soak: races against real runs, merges, many agents at once (also against a refusing API), agents stopped and resumed (about 18 minutes); not part of `make test`
soak: install node_modules/.installed
	$(PY) soak/races.py --seeds 0 100
	$(PY) soak/merges.py --seeds 0 60
	$(PY) soak/agents.py --seeds 0 3
	$(PY) soak/interrupts.py --seeds 0 10
	$(PY) soak/limits.py --seeds 0 1

clean:
	rm -rf $(VENV) node_modules .awoc build
