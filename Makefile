# make run  : set up .venv and start the server (tilewright serve, embedded job executor)
# make test : set up everything the tests need and run the whole suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLE ?= ../shared/testdata/svs/cmu-1-small-region.svs

.PHONY: setup lock run test check fuzz bench docs clean redis-server rabbitmq-server postgresql libmagic azurite web-assets chromium cluster

# constraints.txt pins the versions the suite was last green with; `make lock` refreshes it
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade -e '.[test]'
	@{ sed -n '1,2p' constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.tmp && mv constraints.tmp constraints.txt
	touch $(STAMP)

run: setup web-assets
	@echo "tilewright serve on http://$${TILEWRIGHT_HOST:-127.0.0.1}:$${TILEWRIGHT_PORT:-8000} (API docs at /docs; state in ./data)"
	@echo "upload: curl -F file=@$(SAMPLE) 'http://127.0.0.1:$${TILEWRIGHT_PORT:-8000}/images?collection=demo'"
	$(BIN)/tilewright serve

# OpenSeadragon for the web page's viewer, from the npm registry (Node 20 + npm); never committed
OSD := build/openseadragon/openseadragon.min.js
$(OSD): package.json $(wildcard package-lock.json)
	npm ci --no-audit --no-fund || npm install --no-audit --no-fund
	rm -rf build/openseadragon && mkdir -p build
	cp -r node_modules/openseadragon/build/openseadragon build/openseadragon
	touch $(OSD)

web-assets: $(OSD)

# the cluster without containers: PostgreSQL + RabbitMQ + tilewright serve + 2 workers on loopback, until Ctrl-C
# (scripts/cluster.sh installs postgresql and rabbitmq-server with apt-get if missing; docs/deploy.md)
cluster: setup web-assets
	TILEWRIGHT=$(BIN)/tilewright scripts/cluster.sh

# the browser of tests/test_web.py (driven by Playwright with executable_path=/usr/bin/chromium)
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

redis-server:
	@command -v redis-server >/dev/null 2>&1 || (apt-get update && apt-get install -y redis-server)

# the tests start their own node (tests/rabbit_services.py); the package's own service is never used
rabbitmq-server:
	@test -x /usr/lib/rabbitmq/bin/rabbitmq-server || (apt-get update && apt-get install -y rabbitmq-server)

# tests/pg_services.py runs its own cluster with these (initdb, pg_ctl); Debian's package never started
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && apt-get install -y postgresql)

# python-magic (the IIIF validator's) loads Debian's libmagic
libmagic:
	@ldconfig -p | grep -q 'libmagic.so.1 ' || (apt-get update && apt-get install -y libmagic1)

AZURITE := build/node/node_modules/.bin/azurite-blob

$(AZURITE):
	@command -v npm >/dev/null 2>&1 || (apt-get update && apt-get install -y nodejs npm)
	npm install --prefix build/node --no-audit --no-fund azurite@3

azurite: $(AZURITE)

test: setup redis-server rabbitmq-server postgresql libmagic azurite web-assets chromium
	$(BIN)/python -m pytest

# the gate CI runs before the tests: lint, format, types, import cycles (rules in pyproject.toml)
LINTED := src tests benchmarks scripts
check: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/python scripts/check_imports.py

# the contract and property tests with a larger budget (make test runs them with 15 and 200 examples)
FUZZ_EXAMPLES ?= 300
fuzz: setup
	TILEWRIGHT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_contract.py tests/test_properties.py

bench: setup
	$(BIN)/python benchmarks/convert.py

docs: setup
	$(BIN)/python scripts/make_docs.py

clean:
	rm -rf build .pytest_cache
