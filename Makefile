# New Normal programme monitor: the two commands a newcomer needs are `make up` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages: what `make up` runs with (monitoring, Thai fonts for the reports), and what the tests add
# (a headless Chromium for the pages, poppler-utils' pdftotext for the PDF reports).
# WeasyPrint (the quarterly PDF) needs Pango and HarfBuzz, which shape Thai.
RUN_PACKAGES  := prometheus prometheus-alertmanager fonts-thai-tlwg libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0
TEST_PACKAGES := $(RUN_PACKAGES) chromium poppler-utils

.PHONY: up test unit integration faults faults-full bench bench-reports lint schemas dashboards system-deps run-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Installs the missing ones of $(1) as root; otherwise says what to install and runs $(2) (fail or go on).
define debian_packages
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (as root: apt-get install$$missing)"; $(2); fi; fi
endef

# Tests use promtool, amtool, both servers, Chromium, pdftotext and the Thai fonts.
system-deps:
	$(call debian_packages,$(TEST_PACKAGES),exit 1)

# `make up` on a fresh machine as root installs what it runs with; as another user it starts without them.
run-deps:
	$(call debian_packages,$(RUN_PACKAGES),true)

## Bring the whole system up on embedded servers (Ctrl-C stops it). Pass flags with ARGS="--no-demo".
up: $(STAMP) run-deps
	$(VENV)/bin/newnormal up $(ARGS)

## Run every test: unit, integration over real Kafka-protocol broker and MongoDB-wire server, deploy checks, faults.
test: $(STAMP) system-deps
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

faults: $(STAMP)
	$(PY) -m pytest -q tests/faults

## The fault run at full size, on demand (not in CI): 100,000 events, three services, 10 SIGKILLs.
faults-full: $(STAMP)
	$(PY) tests/faults/full.py

## Benchmarks: on demand, never part of `make test`; results land in bench/results/*.json.
bench: $(STAMP)
	@for b in $(BENCHES); do echo "== $$b"; $(PY) -m bench.$$b || exit 1; done
	$(PY) -m bench.platform_report

BENCHES ?= platform_ingest platform_consumer e2e_latency deadline_notification scaling memory \
           roadmap_consumer training_import feedback_pipeline notifier_fanout hostile_body write_costs

## The reports service at full size (10,000 milestones, 200,000 completions, 1,000,000 responses; several minutes).
bench-reports: $(STAMP)
	nice -n 10 $(PY) -m bench.reports_full

lint: $(STAMP)
	$(VENV)/bin/ruff check services tests bench

schemas: $(STAMP)
	$(VENV)/bin/newnormal contracts export-schemas

clean:
	rm -rf $(VENV) .data .pytest_cache
