# `make demo` and `make test` work from a fresh clone: both create .venv and
# install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SOURCES := src tests examples benchmarks

.PHONY: install graphviz lint typecheck test demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The graphviz `dot` program renders SVG/PNG; without it those tests skip and
# say so, everything else runs.
graphviz:
	@command -v dot >/dev/null 2>&1 || \
	  { (apt-get update -qq && apt-get install -y -qq graphviz) >/dev/null 2>&1 \
	    || echo "note: graphviz 'dot' could not be installed; svg/png tests skip"; }

lint: install
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/ruff check $(SOURCES)

typecheck: install
	$(BIN)/mypy

test: install graphviz lint typecheck
	$(BIN)/coverage run -m pytest tests
	@$(BIN)/coverage report --include='src/job_workflow/core/*' --fail-under=90 \
	  > .coverage-core.txt; status=$$?; \
	  grep '^TOTAL' .coverage-core.txt \
	  | sed 's/^TOTAL */core line coverage (fails under 90%): /'; \
	  rm -f .coverage-core.txt; exit $$status

demo: install graphviz
	$(BIN)/job-workflow demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .hypothesis
