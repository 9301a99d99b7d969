# README.md and docs/development.md explain each target (make bench: docs/benchmarks.md).
# Everything runs from the project's own virtualenv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
# The protobuf messages of the remote-write decoder (and of the tests' protobuf scrape target),
# compiled by grpcio-tools' protoc (the protobuf runtime's own major version); not checked in.
PROTOS := $(wildcard ingest/proto/*.proto) $(wildcard tests/senders/*.proto)
# The OpenTelemetry SDK with its JSON exporter, a sender in the tests: a virtualenv of its own.
OTLP_JSON := .venv-otlp-json

.PHONY: install run serve test bench db db-stop lint format clean

install: $(INSTALLED) $(PROTOS:.proto=_pb2.py)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

$(OTLP_JSON)/.installed: tests/senders/otlp-json.txt
	$(PYTHON) -m venv $(OTLP_JSON)
	$(OTLP_JSON)/bin/pip install --quiet -r $<
	touch $@

%_pb2.py: %.proto $(INSTALLED)
	$(BIN)/python -m grpc_tools.protoc -I$(<D) --python_out=$(<D) --pyi_out=$(<D) $<

## make run: a local TimescaleDB (started if needed) and the API on http://localhost:$(PORT)
run: install
	bin/with-database $(BIN)/python -m service

## make serve: the API against $$DATABASE_URL, migrating first; starts no database
serve: install
	@test -n "$$DATABASE_URL" || { echo "make serve needs DATABASE_URL (make run starts a database)" >&2; exit 2; }
	$(BIN)/python -m service

## make test: the whole suite against a throwaway TimescaleDB (or $$DATABASE_URL's server)
test: install $(OTLP_JSON)/.installed
	@bin/ensure-tools prometheus victoria-metrics || echo "make test: prometheus and vmagent could not be installed; their sender tests will be skipped" >&2
	$(BIN)/pytest $(PYTEST_ARGS)

## make bench: ingest benchmark (raw COPY vs our HTTP paths), figures printed and saved as JSON
bench: install
	bin/ensure-tools
	bin/with-database $(BIN)/python -m bench $(BENCH_ARGS)

## make db: start the local TimescaleDB in the background and print its DATABASE_URL
db:
	@bin/localdb start dev | tail -1 | sed 's/^/DATABASE_URL=/'

db-stop:
	bin/localdb stop dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	-bin/localdb stop dev; bin/localdb stop run
	rm -rf .local $(VENV) $(OTLP_JSON)
