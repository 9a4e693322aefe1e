# The two commands a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := vault crypto workers
CHECKED := $(SOURCES) tests bench

.PHONY: run test lint typecheck pytest promtool-test bench clean system-deps

# Debian packages the tests need: ffmpeg/ffprobe for the video seek test, chromium for
# the console's browser tests (Playwright drives it; its own browser download is not used).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps are keyed on pyproject.toml, so a changed dependency list reinstalls.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/datavault serve

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy $(SOURCES)

system-deps:
	@command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || { \
	  echo "installing ffmpeg from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends ffmpeg; }
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

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

# pytest exits 5 when it collects nothing; make treats any non-zero exit as failure.
pytest: $(VENV)/.installed-test system-deps
	$(BIN)/pytest

test: lint typecheck promtool-test pytest

bench: $(VENV)/.installed-test
	$(BIN)/python bench/crypto_bench.py
	$(BIN)/python bench/stream_bench.py
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/epoch_bench.py
	$(BIN)/python bench/load_bench.py

clean:
	rm -rf $(VENV) .datavault .pytest_cache .mypy_cache .ruff_cache
