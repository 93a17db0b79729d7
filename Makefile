# ConceptEvo — the two commands are `make demo` and `make test`; everything else is a step of theirs.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.setup-stamp
PYTEST_ARGS ?=

.PHONY: setup test demo lint frontend chromium postgresql clean-demo

setup: $(STAMP) frontend chromium postgresql

# The venv is rebuilt only when pyproject.toml changes. torch/torchvision are pinned to the
# wheels on this machine's disk (a plain `torch` would download several GB).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

frontend:
	@if [ -f frontend/package.json ]; then \
		cd frontend && ( [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund ) && npm run build; \
	fi

# Debian's chromium for the browser tests, when it is missing and we may install it.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "warning: could not install chromium; browser tests will be skipped"; \
		else echo "note: chromium missing and apt-get unavailable; browser tests will be skipped"; fi; \
	fi

# Debian's PostgreSQL server binaries for the PostgreSQL tests (tests/pg.py starts a throwaway server; the
# package's own cluster is not used), when they are missing and we may install them.
postgresql:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null) \
			|| echo "warning: could not install postgresql; PostgreSQL tests will be skipped"; \
		else echo "note: postgresql missing and apt-get unavailable; PostgreSQL tests will be skipped"; fi; \
	fi

# The front end's unit tests (vitest) first, then every Python test, browser tests included (pytest last, so
# its summary closes the output).
test: setup
	cd frontend && npx vitest run
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

demo: setup
	$(PY) -m worker.cli demo

clean-demo:
	rm -rf data/demo
