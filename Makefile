# herl — every target does its own set-up (scripts/setup.sh is idempotent and cheap when done).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export NLTK_DATA ?= $(HOME)/.cache/herl/nltk_data
# operator/ (imported as herl_operator) must never shadow the stdlib `operator`: keep the current
# directory off sys.path for every Python we start (see scripts/setup.sh).
export PYTHONSAFEPATH := 1
HERL := $(VENV)/bin/herl

.PHONY: setup setup-demo demo test lint generate images clean cluster cluster-down cluster-build cluster-status

setup:
	@bash scripts/setup.sh

# Only what the local engine needs (no veRL, operator, test tools, Prometheus): see scripts/setup.sh.
setup-demo:
	@bash scripts/setup.sh demo

# The README's main job: a short local HeRL run on SmolLM2-135M (CPU, under 5 minutes with set-up) that
# ends by showing what hindsight did (a line per step, one real revision); outputs under runs/demo.
demo: setup-demo
	$(HERL) train manifests/samples/local-smollm2.yaml --out runs/demo

# The README's test command: lint, formatting, generated files in sync, the whole suite (tests/e2e runs
# on a real control plane built from Go modules: the first build takes ~20 min on 2 cores, then cached).
test: setup cluster-build
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(HERL) generate --check
	$(PY) scripts/cluster/gen_tools_mod.py --check
	$(VENV)/bin/pytest -q

# A real Kubernetes control plane on this machine (etcd, kube-apiserver, controller-manager, scheduler,
# kwok GPU/CPU nodes, KubeRay, Kueue): KUBECONFIG=.cluster/kubeconfig. See docs/testing.md.
cluster-build:
	@bash scripts/cluster/build.sh >/dev/null
cluster: setup cluster-build
	$(PY) tests/e2e/devcluster.py up --kueue
cluster-down:
	@$(PY) tests/e2e/devcluster.py down
cluster-status:
	@$(PY) tests/e2e/devcluster.py status

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
