#!/usr/bin/env bash
# berth against a REAL Kubernetes cluster (kind or k3d), for people who have one.
# NOT run by CI or `cargo test`: no API server can run where berth's tests run; there the
# Kubernetes source is tested against a fake API server (crates/berth-sources/src/kube_tests.rs,
# crates/berth/tests/status.rs, e2e/tests/kube.rs).
#
#   bash e2e/k8s/real-cluster.sh            # kind (default) or: CLUSTER=k3d bash e2e/k8s/real-cluster.sh
#
# Needs: docker, kubectl, helm, kind or k3d, cargo. It creates a throw-away cluster
# "berth-e2e", installs the chart (CRDs, RBAC, remote-host token), runs the agent on THIS
# Docker host outside the cluster (as a fleet host would), applies manifests/examples/hello as
# a custom resource and checks: the container runs, the object reports Ready=True (kubectl
# wait, as Flux/Argo CD health checks would), the Host object exists, the heartbeat Lease is
# renewed; then it retargets the object away and checks that the container goes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CLUSTER=${CLUSTER:-kind}
NAME=berth-e2e
NODE=real-cluster-host
work=$(mktemp -d)
agent_pid=""
cleanup() {
  [[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null || true
  docker rm -f default_hello_0 >/dev/null 2>&1 || true
  case $CLUSTER in
    kind) kind delete cluster --name "$NAME" >/dev/null 2>&1 || true ;;
    k3d) k3d cluster delete "$NAME" >/dev/null 2>&1 || true ;;
  esac
  rm -rf "$work"
}
trap cleanup EXIT

case $CLUSTER in
  kind) kind create cluster --name "$NAME" --wait 120s ;;
  k3d) k3d cluster create "$NAME" --wait ;;
  *) echo "CLUSTER must be kind or k3d" >&2; exit 2 ;;
esac
kubectl create namespace berth-system
helm install berth charts/berth -n berth-system --set remoteHosts.enabled=true --wait
for _ in $(seq 30); do
  kubectl -n berth-system get secret berth-remote-hosts -o jsonpath='{.data.token}' | grep -q . && break
  sleep 1
done
manifests/kube/host-kubeconfig.sh berth-system berth-remote-hosts > "$work/kubeconfig"

bash e2e/images/build.sh busybox
cargo build -p berth
./target/debug/berth --node-name "$NODE" --node-label zone=lab \
  agent --kube --kubeconfig "$work/kubeconfig" --lease-namespace berth-system \
  > "$work/agent.log" 2>&1 &
agent_pid=$!

# The example, unchanged, plus a hostSelector targeting this host.
kubectl apply -f manifests/examples/hello/hello.yaml
kubectl patch containers.berth.dev hello --type merge -p '{"spec":{"hostSelector":{"matchLabels":{"zone":"lab"}}}}'
kubectl wait containers.berth.dev/hello --for=condition=Ready --timeout=120s
curl -fsS http://127.0.0.1:8088/ | grep -q "hello from berth"
kubectl get containers.berth.dev -o wide
kubectl get hosts.berth.dev
kubectl get hosts.berth.dev "$NODE" -o jsonpath='{.status.engineVersion}' | grep -q .
kubectl -n berth-system get lease "$NODE" -o jsonpath='{.spec.renewTime}' | grep -q .
kubectl get events --field-selector involvedObject.name=hello | grep -q Created

# Retarget: the container goes, and this host's status entry with it.
kubectl patch containers.berth.dev hello --type merge -p '{"spec":{"hostSelector":{"matchLabels":{"zone":"elsewhere"}}}}'
for _ in $(seq 60); do
  docker inspect default_hello_0 >/dev/null 2>&1 || break
  sleep 1
done
! docker inspect default_hello_0 >/dev/null 2>&1
echo "real-cluster e2e: OK"
