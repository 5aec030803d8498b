# Developer entry points. `make test` works from a clean clone: it creates .venv
# and installs the package with its dev extras before running anything.

PYTHON ?= python3
# Extra pytest arguments: `make test PYTEST_ARGS="-n 3"` runs the suite on three
# workers (pytest-xdist; about 7 minutes instead of 15 on 2 cores). Serial by
# default: under that load some timing-sensitive tests still fail now and then.
PYTEST_ARGS ?=
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test lint demo docs clean

venv: $(STAMP)

# Re-run the install only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev,bench,otel,examples]'
	# The dashboard's browser tests drive Debian's chromium (root on these machines).
	command -v chromium >/dev/null || apt-get install -y --no-install-recommends chromium \
		|| (apt-get update && apt-get install -y --no-install-recommends chromium)
	# examples/pricing tests its Prometheus alerting rules with promtool (Debian's prometheus).
	command -v promtool >/dev/null || apt-get install -y --no-install-recommends prometheus \
		|| (apt-get update && apt-get install -y --no-install-recommends prometheus)
	# docs/deployment's systemd units are checked with systemd-analyze verify.
	command -v systemd-analyze >/dev/null || apt-get install -y --no-install-recommends systemd \
		|| (apt-get update && apt-get install -y --no-install-recommends systemd)
	touch $@

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet

lint: venv
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

demo: venv
	$(BIN)/conveyor demo

# The documentation site into site/ (--strict: a broken link or reference fails).
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

clean:
	rm -rf site $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
