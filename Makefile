# make run  : set up .venv and convert a sample slide to Deep Zoom (embedded defaults)
# make test : set up everything the tests need and run the whole suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLE ?= ../shared/testdata/svs/cmu-1-small-region.svs

.PHONY: setup run test bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	@mkdir -p build
	$(BIN)/tilewright info "$(SAMPLE)" --no-properties
	$(BIN)/tilewright convert "$(SAMPLE)" -o build/sample --to dzi --overwrite
	@echo
	@echo "Deep Zoom pyramid: $(CURDIR)/build/sample.dzi (tiles in build/sample_files/)"
	@echo "View it: serve build/ over HTTP (python3 -m http.server -d build) and point OpenSeadragon's"
	@echo "tileSources at sample.dzi."

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/convert.py

docs: setup
	$(BIN)/python scripts/sync_readme.py

clean:
	rm -rf build .pytest_cache
