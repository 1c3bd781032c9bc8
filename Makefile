# flyte-agent-operator — every target installs what it needs; nothing relies on hand-installed tools.
#
#   make demo         local control plane + operator + examples taken to Succeeded
#   make test         the whole test suite against a real local control plane
#
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
CLUSTER_DIR ?= .cluster
KIND_CLUSTER ?= agent-operator
IMAGE       ?= flyte-agent-operator:dev
PYTEST_ARGS ?=
BENCH_ARGS  ?=

.PHONY: help
help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) (>= 3.11) is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	@touch $@

.PHONY: install
install: $(VENV)/.installed ## create .venv and install the package with the dev extra

.PHONY: crds
crds: install ## regenerate crds/ from the Python model (operator/agent_operator/crd/)
	$(PY) -m agent_operator.crd.manifest
	$(PY) -m agent_operator.crd.manifest -o manifests/crd/agenttasks.flyteagents.dev.yaml
	$(PY) -m agent_operator.crd.manifest -o charts/flyte-agent-operator/crds/agenttasks.flyteagents.dev.yaml

.PHONY: controlplane
controlplane: install ## build (or find cached / KUBEBUILDER_ASSETS) etcd, kube-apiserver, kube-controller-manager, kubectl
	@start=$$(date +%s); \
	$(PY) -m agent_operator.testing.assets build; \
	echo "control-plane binaries ready in $$(( $$(date +%s) - start ))s"

.PHONY: kubectl
kubectl: controlplane ## print the path of the kubectl built from the pinned release
	@$(PY) -m agent_operator.testing.assets kubectl

.PHONY: lint
lint: install ## mypy --strict and the import contracts of .importlinter (layers, no cycles)
	$(PY) -m mypy operator/agent_operator
	$(VENV)/bin/lint-imports

# A local node (kubelet + containerd + runc + CNI plugins) needs these Debian packages; gcc and
# libc6-dev compile the pause image locally (no registry is reachable to pull it).
NODE_DEBS ?= containerd runc containernetworking-plugins iptables iproute2 util-linux gcc libc6-dev
NODES     ?= 0

.PHONY: node-prereqs
node-prereqs: ## install the local node's Debian packages (containerd, runc, CNI plugins, iptables) if missing
	@missing=$$(for p in $(NODE_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "node prerequisites present: $(NODE_DEBS)"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "error: installing $$missing needs root (apt-get)" >&2; exit 1; fi; \
	echo "installing $$missing"; \
	apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing

# the node tests (tests/integration/test_node.py, test_operator_pods.py, test_helm_pods.py) run in make test
test: node-prereqs

.PHONY: test
test: lint controlplane prometheus flux ## lint, then unit and integration tests against a real local control plane
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## only the tests that need no cluster
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: cluster-up
cluster-up: controlplane ## start the local control plane in the background (NODES=1 adds a node; kubeconfig: make -s kubeconfig)
	@if [ "$(NODES)" != 0 ]; then $(MAKE) -s node-prereqs; fi
	@$(PY) -m agent_operator.testing.cluster --state-dir $(CLUSTER_DIR) --nodes $(NODES) up
	@mkdir -p $(CLUSTER_DIR)/bin && ln -sf "$$($(PY) -m agent_operator.testing.assets kubectl)" $(CLUSTER_DIR)/bin/kubectl
	@echo "kubectl: $(CLUSTER_DIR)/bin/kubectl --kubeconfig $(CLUSTER_DIR)/kubeconfig get ns"

.PHONY: cluster-down
cluster-down: ## stop the local control plane started by cluster-up
	@if [ -x $(PY) ]; then $(PY) -m agent_operator.testing.cluster --state-dir $(CLUSTER_DIR) down; fi

.PHONY: cluster-status
cluster-status: install ## show the running local control plane
	@$(PY) -m agent_operator.testing.cluster --state-dir $(CLUSTER_DIR) status

.PHONY: kubeconfig
kubeconfig: ## print the path of the local control plane's kubeconfig
	@echo "$(abspath $(CLUSTER_DIR))/kubeconfig"

.PHONY: demo
demo: controlplane ## start the control plane and the operator, apply examples/, wait for Succeeded
	@bash examples/demo.sh

.PHONY: demo-cluster
demo-cluster: controlplane node-prereqs image ## the examples driven by the operator as pods on a local node (built image, manifests/)
	@bash examples/demo-cluster.sh

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PIP) install --quiet -e '.[dev,bench]'
	@touch $@

.PHONY: bench
bench: controlplane $(VENV)/.bench-installed ## benchmarks against baselines (about 20 minutes); flags in BENCH_ARGS
	$(PY) -m bench.run --quick $(BENCH_ARGS)

.PHONY: bench-full
bench-full: controlplane $(VENV)/.bench-installed ## the large benchmark scenarios (10,000 tasks)
	$(PY) -m bench.run --full $(BENCH_ARGS)

.PHONY: chaos
chaos: controlplane ## the full fault suite (operator kills, API server restarts, agent outages)
	AGENT_OPERATOR_CHAOS=full $(PY) -m pytest tests/integration -m chaos $(PYTEST_ARGS)

# make test builds the documentation site too (a broken link or nav entry fails it)
test: docs

.PHONY: docs
docs: install ## build the documentation site into site/ (mkdocs --strict: a broken link or nav entry fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

.PHONY: docs-serve
docs-serve: install ## serve the documentation site on 127.0.0.1:8000, rebuilt on every change
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

FLOORS_VENV ?= .venv-floors
#: the unit tests that need no flytekit (the dev extra's flytekit needs a newer flyteidl than the floor)
FLOOR_TESTS ?= tests/unit/test_cli_validate.py tests/unit/test_cli_main.py tests/unit/test_cli_run_local.py \
  tests/unit/test_serialization_inputs.py tests/unit/test_serialization_literals.py \
  tests/unit/test_serialization_templates.py tests/unit/test_core_reconcile.py tests/unit/test_core_parts.py \
  tests/unit/test_sdk_base.py tests/unit/test_sdk_registry.py tests/unit/test_sdk_executor.py \
  tests/unit/test_crd_model.py tests/unit/test_agent_sensor.py tests/unit/test_agent_webhook.py \
  tests/unit/test_bridges_remote.py tests/unit/test_bridges_serve.py tests/unit/test_observability.py

.PHONY: test-floors
test-floors: install ## the unit tests on the lowest dependency versions pyproject.toml allows (own venv)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/pip install --quiet --upgrade pip "setuptools>=77" wheel
	$(FLOORS_VENV)/bin/pip install --quiet $$($(PY) tests/floors.py) pytest pytest-timeout hypothesis packaging cryptography httpx
	$(FLOORS_VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	$(FLOORS_VENV)/bin/pip check
	$(FLOORS_VENV)/bin/python -m pytest -q -p no:cacheprovider $(FLOOR_TESTS) $(PYTEST_ARGS)

.PHONY: kind-up
kind-up: ## (needs Docker + kind) create the kind cluster $(KIND_CLUSTER) unless it exists
	@command -v kind >/dev/null || { echo "error: kind is required (go install sigs.k8s.io/kind@latest)" >&2; exit 1; }
	@kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || kind create cluster --name $(KIND_CLUSTER) --wait 120s

.PHONY: kind-deploy
kind-deploy: install ## (needs Docker + kind) build the image, load it into kind, apply manifests/overlays/kind, wait for the rollout
	@command -v docker >/dev/null || { echo "error: docker is required" >&2; exit 1; }
	@command -v kind >/dev/null || { echo "error: kind is required (make kind-up)" >&2; exit 1; }
	docker build -t flyte-agent-operator:dev .
	kind load docker-image flyte-agent-operator:dev --name $(KIND_CLUSTER)
	@k="$$($(PY) -m agent_operator.testing.assets kubectl)"; ctx=kind-$(KIND_CLUSTER); \
	"$$k" --context $$ctx apply --server-side -k manifests/overlays/kind; \
	"$$k" --context $$ctx wait --for=condition=Established crd/agenttasks.flyteagents.dev --timeout=60s; \
	"$$k" --context $$ctx -n flyte-agent-operator rollout status deployment/agent-operator --timeout=180s; \
	echo "deployed; try: $$k --context $$ctx apply -f examples/webhook-get.yaml"

.PHONY: clean
clean: cluster-down ## remove the venv, caches and local cluster state (keeps the binary cache)
	rm -rf $(VENV) $(FLOORS_VENV) $(CLUSTER_DIR) .pytest_cache .hypothesis build dist site *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	@echo "binary cache kept in $${AGENT_OPERATOR_CACHE:-$$HOME/.cache/agent-operator} (rm -rf it to rebuild)"

# ---- image (buildah, no daemon) and Helm chart: docs/image.md, docs/helm.md ----
IMAGE_DEPS := buildah mmdebstrap umoci runc skopeo docker-registry
IMAGE_TAG  ?= dev

.PHONY: image-deps
image-deps: ## install buildah, mmdebstrap, umoci, runc, skopeo and docker-registry from Debian unless present
	@missing=""; for t in $(IMAGE_DEPS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(IMAGE_DEPS); \
	fi

.PHONY: image
image: install image-deps ## build the Dockerfile with buildah into a cached OCI archive (prints its path and ref)
	@$(PY) -m agent_operator.testing.image build $(IMAGE_TAG)

.PHONY: image-path
image-path: ## print the path of the image archive `make image` built for the current sources
	@$(PY) -m agent_operator.testing.image path $(IMAGE_TAG)

.PHONY: image-lock
image-lock: install ## re-lock the image's Python dependencies (requirements/image*.lock) with uv
	$(PIP) install --quiet 'uv==0.13.8'
	$(VENV)/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 --no-header \
	  pyproject.toml requirements/image-build.in -o requirements/image.lock
	$(VENV)/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 --no-header \
	  --extra flytekit pyproject.toml requirements/image-build.in -o requirements/image-flytekit.lock

.PHONY: helm
helm: install ## print the path of the helm built from its Go module (AGENT_OPERATOR_HELM brings your own)
	@$(PY) -m agent_operator.testing.helm path

# the image and helm are built (or found cached) before the tests that use them
test: image helm

.PHONY: prometheus
prometheus: install ## build (or find cached / PROMETHEUS_BIN_DIR) promtool and prometheus
	@start=$$(date +%s); \
	$(PY) -m agent_operator.testing.gotools build prometheus; \
	echo "promtool and prometheus ready in $$(( $$(date +%s) - start ))s"

.PHONY: flux
flux: install ## build (or find cached / FLUX_BIN_DIR) Flux's source-controller and kustomize-controller
	@start=$$(date +%s); \
	$(PY) -m agent_operator.testing.gotools build flux; \
	echo "Flux controllers ready in $$(( $$(date +%s) - start ))s"

.PHONY: gitops-demo
gitops-demo: controlplane flux ## examples/ committed to a loopback git server, synced by Flux built here, run to Succeeded
	@bash examples/gitops-demo.sh
