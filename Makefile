# ShopStream: `make run` runs the platform, `make test` runs the whole test suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test test-unit test-integration test-e2e chromium bench lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ShopStream needs Python 3.11 or newer (set PYTHON=python3.11)")'
	@echo "[shopstream] creating $(VENV) and installing the project with its dev and test extras ..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[dev,test]'
	@touch $(STAMP)
	@echo "[shopstream] installed"

# WORKERS=2 starts two workers that share the partitions.
WORKERS ?= 1
run: install
	WORKERS=$(WORKERS) $(PY) -m scripts.run

test: install chromium
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# test_analytics_pages drives Chromium too.
test-integration: install chromium
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install chromium
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# The browser tests (tests/e2e) drive the Debian package chromium through Playwright; they
# never download a browser (no `playwright install`).
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "[shopstream] $(CHROMIUM) is missing: installing the Debian package 'chromium' for the browser tests ..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y -q chromium >/dev/null || \
	    { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; \
	  [ -x $(CHROMIUM) ] || { echo "[shopstream] could not install the Debian package 'chromium' ($(CHROMIUM) is missing): install it with 'apt-get install -y chromium' and run make test again" >&2; exit 1; }; \
	  echo "[shopstream] chromium installed"; \
	fi

bench: install
	$(PY) -m bench $(BENCH_ARGS)

# ruff, mypy, then the import contracts of setup.cfg (layers import downward only)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf var .pytest_cache .hypothesis .mypy_cache .ruff_cache .import_linter_cache
