# Every target creates .venv on first use. TORCH is installed before the package so that
# pip keeps it: here the local CPU wheel; elsewhere override, e.g. `make test TORCH=torch`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint typecheck clean chromium labelme-examples

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,plot,onnx,video]"
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/emanet demo

test: $(STAMP) chromium labelme-examples
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The inner loop: everything but training, DDP, compile, demo and browser tests (marked slow).
test-fast: $(STAMP) labelme-examples
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Static types: the [tool.mypy] section of pyproject.toml (files, overrides for the public API).
typecheck: $(STAMP)
	$(BIN)/mypy

# The report's browser test needs Chromium (Debian package `chromium`): installed here when
# missing and running as root; otherwise that test fails and says how to install it.
chromium:
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "make: could not install chromium with apt-get; the browser test will fail" >&2

# The data tests read real VOC images and VOC-palette masks from Debian's `labelme-examples`:
# installed here when missing and running as root; otherwise those tests fail and say how to install it.
labelme-examples:
	@test -d /usr/share/doc/labelme-examples/examples/semantic_segmentation || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq labelme-examples >/dev/null) || \
	  echo "make: could not install labelme-examples with apt-get; the VOC fixture tests will fail" >&2

clean:
	rm -rf $(VENV) runs .pytest_cache
