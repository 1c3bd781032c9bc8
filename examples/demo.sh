#!/usr/bin/env bash
# make demo: the local control plane, the operator and every example in examples/ taken to
# Succeeded.  Run through `make demo` (it builds/installs what this needs first).
#
# Leaves the control plane running so you can look around (`make cluster-down` stops it);
# stops the operator and the demo webhook server on exit.
set -euo pipefail

DEMO_NAMESPACE_DEFAULT=agent-operator-demo
DEMO_TIMEOUT_DEFAULT=180s
DEMO_LOG_NAME=demo
demo_failed() {
  echo "demo failed (exit $1); operator log: $LOG_DIR/operator.log" >&2
  tail -n 40 "$LOG_DIR/operator.log" 2>/dev/null >&2 || true
}
# shellcheck source=examples/demo-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/demo-lib.sh"

step "starting the local control plane (kube-apiserver, etcd, kube-controller-manager)"
"$PY" -m agent_operator.testing.cluster --state-dir "$CLUSTER_DIR" up
mkdir -p "$LOG_DIR" "$CLUSTER_DIR/bin"
ln -sf "$KUBECTL" "$CLUSTER_DIR/bin/kubectl"

step "installing the AgentTask CRD"
k apply --server-side --force-conflicts -f crds/
k wait --for=condition=Established crd/agenttasks.flyteagents.dev --timeout=60s

step "resetting the demo namespace $NAMESPACE"
if k get namespace "$NAMESPACE" >/dev/null 2>&1; then
  k delete namespace "$NAMESPACE" --wait=true --timeout=120s
fi
k create namespace "$NAMESPACE"
rm -rf "$SENSOR_DIR" && mkdir -p "$SENSOR_DIR"

step "starting the demo webhook server on 127.0.0.1:$WEBHOOK_PORT"
"$PY" examples/webhook_server.py --port "$WEBHOOK_PORT" >"$LOG_DIR/webhook.log" 2>&1 &
pids+=($!)

step "starting the operator (log: $LOG_DIR/operator.log)"
"$AGENT_OPERATOR" run --kubeconfig "$KUBECONFIG_PATH" --namespace "$NAMESPACE" \
  --health-port 0 --metrics-port 0 >"$LOG_DIR/operator.log" 2>&1 &
pids+=($!)

step "applying examples/"
for f in examples/*.yaml; do k -n "$NAMESPACE" apply -f "$f"; done
k -n "$NAMESPACE" get agenttasks

step "the sensor waits for its file; creating $SENSOR_DIR/ready in 5 s"
sleep 5
k -n "$NAMESPACE" get agenttasks
date >"$SENSOR_DIR/ready"

step "waiting for every example to reach Succeeded (timeout $WAIT_TIMEOUT)"
k -n "$NAMESPACE" wait --for=condition=Succeeded agenttasks --all --timeout="$WAIT_TIMEOUT"

step "done"
k -n "$NAMESPACE" get agenttasks -o wide
cat <<EOF

Every example reached Succeeded.  Look around:
  $CLUSTER_DIR/bin/kubectl --kubeconfig $KUBECONFIG_PATH -n $NAMESPACE get at -o yaml
Stop the control plane with: make cluster-down
EOF
