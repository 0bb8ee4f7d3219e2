# herl — every target does its own set-up (scripts/setup.sh is idempotent and cheap when done).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export NLTK_DATA ?= $(HOME)/.cache/herl/nltk_data
# operator/ (imported as herl_operator) must never shadow the stdlib `operator`: keep the current
# directory off sys.path for every Python we start (see scripts/setup.sh).
export PYTHONSAFEPATH := 1
HERL := $(VENV)/bin/herl

.PHONY: setup demo test lint generate images clean

setup:
	@bash scripts/setup.sh

# The README's main job: a short local HeRL run on SmolLM2-135M (CPU, a few minutes).
demo: setup
	$(HERL) train manifests/samples/local-smollm2.yaml --out runs/demo

# The README's test command: lint, formatting, generated files in sync, the whole suite.
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(HERL) generate --check
	$(VENV)/bin/pytest -q

# Lint and formatting only; fails on any finding.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Regenerate every derived file (CRDs, docs/api.md, manifests/install.yaml, dashboards).
generate: setup
	$(HERL) generate

# Images cannot be built on our CI machines (no Docker engine); this target is for people with Docker.
IMAGE_REPO ?= ghcr.io/herl-dev
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
images:
	docker build -f images/operator/Dockerfile -t $(IMAGE_REPO)/herl-operator:$(VERSION) .
	docker build -f images/trainer/Dockerfile -t $(IMAGE_REPO)/herl-trainer:$(VERSION) .

clean:
	rm -rf runs .pytest_cache .ruff_cache
