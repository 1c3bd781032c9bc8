#!/usr/bin/env bash
# make demo-cluster: the same examples as `make demo`, driven by the operator running as pods
# on a real local node: the image `make image` built (imported into the node's containerd),
# manifests/overlays/cluster-wide applied with only the image reference patched.
#
# Leaves the cluster up for a look around; `make cluster-down` removes everything, node included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
CLUSTER_DIR="${CLUSTER_DIR:-$ROOT/.cluster}"
KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"
OPERATOR_NS="flyte-agent-operator"
NAMESPACE="${DEMO_NAMESPACE:-agent-operator-demo}"
WAIT_TIMEOUT="${DEMO_TIMEOUT:-240s}"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
KUBECTL="$("$PY" -m agent_operator.testing.assets kubectl)"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
cluster() { "$PY" -m agent_operator.testing.cluster --state-dir "$CLUSTER_DIR" "$@"; }

step "starting the local control plane with a node (containerd, kubelet, kube-proxy)"
if state="$(cluster status 2>/dev/null)" && ! grep -q '"internal_ip"' <<<"$state"; then
  echo "a control plane without a node runs in $CLUSTER_DIR; stop it first: make cluster-down" >&2
  exit 1
fi
cluster --nodes 1 up
mkdir -p "$CLUSTER_DIR/bin" && ln -sf "$KUBECTL" "$CLUSTER_DIR/bin/kubectl"

step "importing the operator image (make image) and the demo webhook server image into the node"
mapfile -t image < <("$PY" -c 'from agent_operator.testing.image import image_archive as a
x = a(log=lambda m: None); print(x.path); print(x.ref)')
cluster import-image "${image[0]}"
probe="$("$PY" -c 'from agent_operator.testing.images import probe_archive; print(probe_archive())')"
cluster import-image "$probe" localhost/agent-operator/probe:local

step "applying manifests/overlays/cluster-wide with image ${image[1]}"
overlay="$CLUSTER_DIR/demo-cluster/overlay"
"$PY" -m agent_operator.testing.podinstall overlay "$overlay" --namespace "$OPERATOR_NS" --image "${image[1]}"
k apply --server-side --force-conflicts -k "$overlay"
k -n "$OPERATOR_NS" rollout status deployment/agent-operator --timeout=240s
k -n "$OPERATOR_NS" get pods -o wide

step "resetting the demo namespace $NAMESPACE and starting the webhook server pod"
if k get namespace "$NAMESPACE" >/dev/null 2>&1; then
  k delete namespace "$NAMESPACE" --wait=true --timeout=120s
fi
k create namespace "$NAMESPACE"
k label namespace "$NAMESPACE" pod-security.kubernetes.io/enforce=restricted
k -n "$NAMESPACE" apply -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: webhook, labels: {app: webhook}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: probe
      image: localhost/agent-operator/probe:local
      imagePullPolicy: Never
      args: [serve, ":8080"]
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
        seccompProfile: {type: RuntimeDefault}
---
apiVersion: v1
kind: Service
metadata: {name: webhook}
spec:
  selector: {app: webhook}
  ports: [{port: 80, targetPort: 8080}]
EOF
k -n "$NAMESPACE" wait --for=condition=Ready pod/webhook --timeout=120s
webhook_ip="$(k -n "$NAMESPACE" get svc webhook -o jsonpath='{.spec.clusterIP}')"

step "applying examples/ (webhook URLs pointed at the webhook Service $webhook_ip)"
for f in examples/*.yaml; do
  sed "s#http://127.0.0.1:18080#http://$webhook_ip#" "$f" | k -n "$NAMESPACE" apply -f -
done
k -n "$NAMESPACE" get agenttasks

step "the sensor waits for its file; creating /tmp/agent-operator-demo/ready in the operator pods in 5 s"
sleep 5
for pod in $(k -n "$OPERATOR_NS" get pods -l app.kubernetes.io/name=flyte-agent-operator -o name); do
  k -n "$OPERATOR_NS" exec "$pod" -- sh -c 'mkdir -p /tmp/agent-operator-demo && date > /tmp/agent-operator-demo/ready'
done

step "waiting for every example to reach Succeeded (timeout $WAIT_TIMEOUT)"
k -n "$NAMESPACE" wait --for=condition=Succeeded agenttasks --all --timeout="$WAIT_TIMEOUT"

step "done"
k -n "$NAMESPACE" get agenttasks -o wide
echo "webhook calls the pods made:"
k -n "$NAMESPACE" logs webhook
cat <<EOF

Every example reached Succeeded, driven by the operator pods.  Look around:
  $CLUSTER_DIR/bin/kubectl --kubeconfig $KUBECONFIG_PATH -n $OPERATOR_NS get pods,lease
  $CLUSTER_DIR/bin/kubectl --kubeconfig $KUBECONFIG_PATH -n $OPERATOR_NS logs deploy/agent-operator
Remove everything (node included) with: make cluster-down
EOF
