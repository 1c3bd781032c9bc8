# Shared set-up of the demo scripts (sourced by demo.sh and gitops-demo.sh): paths, kubectl,
# and the cleanup that stops what the script started.  The caller sets DEMO_NAMESPACE_DEFAULT,
# DEMO_TIMEOUT_DEFAULT and DEMO_LOG_NAME first and defines demo_failed() (what to show on failure).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
AGENT_OPERATOR="$(dirname "$PY")/agent-operator"
CLUSTER_DIR="${CLUSTER_DIR:-$ROOT/.cluster}"
KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"
NAMESPACE="${DEMO_NAMESPACE:-$DEMO_NAMESPACE_DEFAULT}"
WEBHOOK_PORT="${DEMO_WEBHOOK_PORT:-18080}"
SENSOR_DIR="${DEMO_SENSOR_DIR:-/tmp/agent-operator-demo}"
WAIT_TIMEOUT="${DEMO_TIMEOUT:-$DEMO_TIMEOUT_DEFAULT}"
LOG_DIR="$CLUSTER_DIR/$DEMO_LOG_NAME"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

KUBECTL="$("$PY" -m agent_operator.testing.assets kubectl)"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    demo_failed "$rc"
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM
