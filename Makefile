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
# on a real control plane built from Go modules: the first build takes ~20 min on 2 cores, then cached;
# tests/images runs the images `make images` builds: cold ~N min, then cached layers).
test: setup cluster-build images
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

# The operator and CPU trainer images as OCI archives in dist/images/ (names: herl/images.py). Docker
# builds them where an engine answers; elsewhere buildah does, daemonless, from a Debian base made by
# debootstrap when no registry answers (cached under ~/.cache/herl/images). The GPU trainer image needs
# its veRL base from a registry: `$(PY) scripts/images/build.py --image herl-trainer` (docs/install.md).
images: setup
	@bash scripts/images/install-tools.sh
	$(PY) scripts/images/build.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
