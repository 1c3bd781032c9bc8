#!/usr/bin/env bash
# make gitops-demo: the examples/ AgentTasks committed to a git repository served on loopback,
# synced by Flux's own source-controller and kustomize-controller (built from source), run by
# the operator.  The Kustomization (examples/gitops/flux-sync.yaml, wait: true) turns Ready
# only once every task Succeeded.
#
# Leaves the control plane running (`make cluster-down` stops it); stops the operator, Flux,
# the git server and the demo webhook server on exit.
set -euo pipefail

DEMO_NAMESPACE_DEFAULT=agent-operator-gitops
DEMO_TIMEOUT_DEFAULT=300s
DEMO_LOG_NAME=gitops-demo
demo_failed() {
  echo "gitops demo failed (exit $1); logs in $LOG_DIR" >&2
  tail -n 20 "$LOG_DIR"/*.log "$LOG_DIR"/flux/*.log 2>/dev/null >&2 || true
}
# shellcheck source=examples/demo-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/demo-lib.sh"

step "starting the local control plane"
"$PY" -m agent_operator.testing.cluster --state-dir "$CLUSTER_DIR" up
rm -rf "$LOG_DIR" && mkdir -p "$LOG_DIR" "$CLUSTER_DIR/bin"
ln -sf "$KUBECTL" "$CLUSTER_DIR/bin/kubectl"

step "installing the AgentTask CRD"
k apply --server-side --force-conflicts -f crds/
k wait --for=condition=Established crd/agenttasks.flyteagents.dev --timeout=60s

step "resetting the demo namespace $NAMESPACE"
if k get namespace "$NAMESPACE" >/dev/null 2>&1; then
  k -n "$NAMESPACE" delete kustomizations.kustomize.toolkit.fluxcd.io --all --wait=false 2>/dev/null || true
  k -n "$NAMESPACE" patch agenttasks --all --type=merge -p '{"metadata":{"finalizers":null}}' 2>/dev/null || true
  k delete namespace "$NAMESPACE" --wait=true --timeout=120s
fi
k create namespace "$NAMESPACE"
rm -rf "$SENSOR_DIR" && mkdir -p "$SENSOR_DIR" && date >"$SENSOR_DIR/ready"

step "starting the demo webhook server and the operator (logs: $LOG_DIR)"
"$PY" examples/webhook_server.py --port "$WEBHOOK_PORT" >"$LOG_DIR/webhook.log" 2>&1 &
pids+=($!)
"$AGENT_OPERATOR" run --kubeconfig "$KUBECONFIG_PATH" --namespace "$NAMESPACE" \
  --health-port 0 --metrics-port 0 >"$LOG_DIR/operator.log" 2>&1 &
pids+=($!)

step "starting Flux: source-controller and kustomize-controller (installs their CRDs)"
"$PY" -m agent_operator.testing.flux --kubeconfig "$KUBECONFIG_PATH" --kubectl "$KUBECTL" \
  --state-dir "$LOG_DIR/flux" >"$LOG_DIR/flux.log" 2>&1 &
pids+=($!)

step "serving git on loopback; committing examples/*.yaml to tasks/"
"$PY" -m agent_operator.testing.gitserver --root "$LOG_DIR/git" --port-file "$LOG_DIR/git.port" \
  >"$LOG_DIR/git.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$LOG_DIR/git.port" ] && break; sleep 0.1; done
REPO_URL="http://127.0.0.1:$(cat "$LOG_DIR/git.port")/agenttasks.git"
git init --quiet --bare --initial-branch=main "$LOG_DIR/git/agenttasks.git"
git init --quiet --initial-branch=main "$LOG_DIR/work"
mkdir -p "$LOG_DIR/work/tasks" && cp examples/*.yaml "$LOG_DIR/work/tasks/"
git -C "$LOG_DIR/work" add tasks
git -C "$LOG_DIR/work" -c user.name=demo -c user.email=demo@example.invalid commit --quiet -m "AgentTasks"
git -C "$LOG_DIR/work" push --quiet "$LOG_DIR/git/agenttasks.git" HEAD:main
git ls-remote "$REPO_URL"

step "waiting for Flux to serve its CRDs"
for _ in $(seq 600); do grep -q "running" "$LOG_DIR/flux.log" 2>/dev/null && break; sleep 0.5; done
grep -q "running" "$LOG_DIR/flux.log"

step "syncing the repository (examples/gitops/flux-sync.yaml)"
sed -e "s|\${NAMESPACE}|$NAMESPACE|g" -e "s|\${REPO_URL}|$REPO_URL|g" examples/gitops/flux-sync.yaml | k apply -f -

step "waiting for the Kustomization to be Ready: every AgentTask Succeeded (timeout $WAIT_TIMEOUT)"
k -n "$NAMESPACE" wait --for=condition=Ready kustomizations.kustomize.toolkit.fluxcd.io/agenttasks \
  --timeout="$WAIT_TIMEOUT"

step "done"
k -n "$NAMESPACE" get gitrepositories.source.toolkit.fluxcd.io,kustomizations.kustomize.toolkit.fluxcd.io
k -n "$NAMESPACE" get agenttasks
cat <<EOF

Flux applied every AgentTask from git and reports Ready: each one Succeeded.
Stop the control plane with: make cluster-down
EOF
