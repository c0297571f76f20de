# One command to run the labeler, one to run the tests (README). Both set up what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What serving needs (`make run`), and that plus the test extra (`make test`, `make lint`): a first `make run` does
# not wait for the test tools (mypy, hadolint, ...).
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run test lint e2e-deps video-deps console-deps bench bench-photos clean

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/labeler serve

e2e-deps:
	bash tests/e2e/install.sh

video-deps: $(RUN_STAMP)
	bash tests/video/install.sh $(BIN)/python

console-deps:
	bash tests/console/install.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) e2e-deps video-deps console-deps lint
	$(BIN)/python -m pytest

# Photographs for the hashing benchmarks (bench/_photos.py): Debian's desktop wallpaper packages, ~150 MB.
bench-photos:
	apt-get install -y --no-install-recommends mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-20.04

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
