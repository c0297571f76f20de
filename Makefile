# One command to run the labeler, one to run the tests (README). Both set up what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint e2e-deps video-deps console-deps bench bench-photos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/labeler serve

e2e-deps:
	bash tests/e2e/install.sh

video-deps: $(STAMP)
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
