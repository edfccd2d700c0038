# New Normal programme monitor: the two commands a newcomer needs are `make up` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSTEM_PACKAGES := prometheus prometheus-alertmanager

.PHONY: up test unit integration faults bench lint schemas dashboards system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Prometheus and Alertmanager come from Debian packages (tests use promtool, amtool and both servers).
system-deps:
	@missing=""; for b in prometheus promtool prometheus-alertmanager amtool; do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "install: sudo apt-get install $(SYSTEM_PACKAGES)"; exit 1; fi; fi

## Bring the whole system up on embedded servers (Ctrl-C stops it). Pass flags with ARGS="--no-demo".
up: $(STAMP)
	@command -v prometheus >/dev/null || echo "(Prometheus/Alertmanager not installed: run 'make system-deps' as root to add them)"
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

## Benchmarks: on demand, never part of `make test`; results land in bench/results/*.json.
bench: $(STAMP)
	@for b in $(BENCHES); do echo "== $$b"; $(PY) -m bench.$$b || exit 1; done
	$(PY) -m bench.platform_report

BENCHES ?= platform_ingest platform_consumer e2e_latency deadline_notification scaling memory \
           roadmap_consumer training_import feedback_pipeline notifier_fanout hostile_body

lint: $(STAMP)
	$(VENV)/bin/ruff check services tests bench

schemas: $(STAMP)
	$(VENV)/bin/newnormal contracts export-schemas

clean:
	rm -rf $(VENV) .data .pytest_cache
