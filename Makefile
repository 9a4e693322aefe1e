# The two commands a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet
SOURCES := vault crypto workers
CHECKED := $(SOURCES) tests bench clients/python
# The tenants' Python client: a distribution of its own (clients/python/pyproject.toml),
# installed editable into the test venv so tests/client runs it against a live vault.
CLIENT := clients/python

# Python caches compiled modules (__pycache__, git-ignored) unless PYTHONDONTWRITEBYTECODE is
# set; the suite starts hundreds of Python processes (servers, workers, CLI commands), and
# without the cache each of them compiles the vault's modules and those uv installed anew.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test lint typecheck pytest promtool-test bench clean system-deps lock schema

# Debian packages the tests need: ffmpeg/ffprobe for the video seek test, Chromium's
# headless shell for the browser tests (Playwright drives it; its own browser download is
# not used; tests/console/browser_support.py says why not the full chromium package).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Dependencies come only from the lock files, every file checked against its hash
# (requirements-run.lock: the runtime and the embedded PostgreSQL; requirements-test.lock:
# those and the test tools). uv installs them (itself installed by pip from
# requirements-uv.lock, hashed too): it fetches and unpacks in parallel, ~6 s where pip took
# ~55 s of a clean `make test`. The lock files hold pip and setuptools too, so the project
# itself is then installed without dependencies and without build isolation: nothing
# unhashed is downloaded. Stamps are keyed on pyproject.toml and the lock file.
UV := $(BIN)/uv
UV_PIP := $(UV) pip install --quiet --python $(BIN)/python

$(UV): requirements-uv.lock | $(BIN)/python
	$(PIP) install --require-hashes -r requirements-uv.lock
	touch $@

$(VENV)/.installed-run: pyproject.toml requirements-run.lock | $(UV)
	$(UV_PIP) --require-hashes -r requirements-run.lock
	$(UV_PIP) --no-deps --no-build-isolation -e .
	touch $@

# The client's own dependencies (httpx, cryptography, joserfc) are in the test lock.
$(VENV)/.installed-test: pyproject.toml requirements-test.lock $(CLIENT)/pyproject.toml | $(UV)
	$(UV_PIP) --require-hashes -r requirements-test.lock
	$(UV_PIP) --no-deps --no-build-isolation -e .
	$(UV_PIP) --no-deps --no-build-isolation -e $(CLIENT)
	touch $@ $(VENV)/.installed-run

# Re-resolve the lock files after a change to pyproject.toml's dependencies (existing
# pins are kept where they still fit; `make lock LOCK_UPGRADE=--upgrade` takes the newest).
# requirements.lock (the production image: no embedded PostgreSQL, no test tools) and
# requirements-run.lock are constrained by requirements-test.lock, so all three agree.
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet $(LOCK_UPGRADE)
LOCK_INPUTS := pyproject.toml requirements-build.in

lock: | $(UV)
	$(UV) pip compile requirements-uv.in $(LOCK_FLAGS) -o requirements-uv.lock
	$(UV) pip compile $(LOCK_INPUTS) --extra embedded --extra test $(LOCK_FLAGS) \
	  -o requirements-test.lock
	$(UV) pip compile $(LOCK_INPUTS) --extra embedded $(LOCK_FLAGS) \
	  -c requirements-test.lock -o requirements-run.lock
	$(UV) pip compile $(LOCK_INPUTS) $(LOCK_FLAGS) -c requirements-test.lock \
	  -o requirements.lock

run: $(VENV)/.installed-run
	$(BIN)/datavault serve

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy $(SOURCES) tests bench
	$(BIN)/mypy $(CLIENT)/src

system-deps:
	@command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || { \
	  echo "installing ffmpeg from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends ffmpeg; }
	@test -x /usr/bin/chromium-headless-shell || { \
	  echo "installing chromium-headless-shell from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    chromium-headless-shell; }

# promtool, for the alert rules' unit tests: the one binary taken out of Debian's
# `prometheus` package into the venv. Installing the package would pull in its web assets
# and start a Prometheus server; promtool is a static binary and needs neither.
PROMTOOL := $(VENV)/promtool/usr/bin/promtool

$(PROMTOOL): | $(BIN)/python
	@echo "unpacking promtool from Debian's prometheus package"
	@set -e; tmp=$$(mktemp -d); chmod 777 $$tmp; \
	  (cd $$tmp && apt-get download -qq prometheus 2>/dev/null) || { \
	    $(SUDO) apt-get update -qq && (cd $$tmp && apt-get download -qq prometheus); }; \
	  mkdir -p $(VENV)/promtool; \
	  dpkg-deb --fsys-tarfile $$tmp/prometheus_*.deb | tar -x -C $(VENV)/promtool ./usr/bin/promtool; \
	  rm -rf $$tmp
	@$(PROMTOOL) --version | head -n 1

# Every alert rule has a case that fires and one that stays silent.
promtool-test: $(PROMTOOL)
	$(PROMTOOL) check rules deploy/prometheus/alerts.yaml
	cd deploy/prometheus && $(CURDIR)/$(PROMTOOL) test rules alerts.test.yaml

# pytest exits 5 when it collects nothing; make treats any non-zero exit as failure. A
# suite that lost a folder, or whose tests all skip, would still exit 0: --min-tests (in
# tests/min_tests.py) fails a run in which fewer tests ran. Raise the floor as the suite
# grows (it is a little under the count today: 2,698 collected, strict xfails among them).
MIN_TESTS := 2650

# The suite runs on PYTEST_WORKERS processes (pytest-xdist): its time is mostly waiting on
# servers, PostgreSQL, subprocesses and browsers, so 4 share 2 cores well. Each worker
# starts its own embedded PostgreSQL (and SeaweedFS when a test asks for it). Whole modules
# go to a worker (--dist loadfile: a module's fixtures start once), the longest first
# (tests/conftest.py LONGEST_MODULES, kept in that order by --no-loadscope-reorder).
# `make pytest PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS := 4
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)

pytest: $(VENV)/.installed-test system-deps
	$(BIN)/pytest $(PYTEST_PARALLEL) --min-tests=$(MIN_TESTS)

# lint first (a second, and it fails fast); then the alert rules' tests (fetching promtool is
# mostly waiting) and mypy (~13 s of one core on a clean checkout) beside the suite. A
# failure in any of them fails `make test`.
test: lint
	$(MAKE) --no-print-directory -j3 promtool-test typecheck pytest

# vault/db/schema.sql: what all migrations build (pg_dump --schema-only, normalised), on an
# embedded PostgreSQL in a temporary directory (or DATABASE_URL's server). Run it after
# adding a migration; tests/integration/test_schema_file.py fails until it is current.
schema: $(VENV)/.installed-test
	$(BIN)/python -m tests.schema_dump

bench: $(VENV)/.installed-test
	$(BIN)/python bench/crypto_bench.py
	$(BIN)/python bench/stream_bench.py
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/ledger_compaction_bench.py
	$(BIN)/python bench/epoch_bench.py
	$(BIN)/python bench/webhook_bench.py
	$(BIN)/python bench/load_bench.py
	$(BIN)/python bench/model_bench.py

clean:
	rm -rf $(VENV) .datavault .pytest_cache .mypy_cache .ruff_cache
