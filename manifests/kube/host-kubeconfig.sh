#!/usr/bin/env bash
# Writes a kubeconfig for a berth agent on a host outside the cluster, from the long-lived
# ServiceAccount token Secret the chart creates with remoteHosts.enabled=true.
#
#   manifests/kube/host-kubeconfig.sh NAMESPACE SECRET [API_SERVER_URL] > kubeconfig
#
# e.g. manifests/kube/host-kubeconfig.sh berth-system berth-remote-hosts > kubeconfig
# Needs kubectl with access to the Secret. The agent's permissions are those of the chart's
# RBAC (read berth objects and the Secrets/ConfigMaps they name, write their status, its Host,
# its Lease and Events) — treat the file like a password.
set -euo pipefail
ns=${1:?namespace}
secret=${2:?secret name}
server=${3:-$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')}
token=$(kubectl -n "$ns" get secret "$secret" -o jsonpath='{.data.token}' | base64 -d)
ca=$(kubectl -n "$ns" get secret "$secret" -o jsonpath='{.data.ca\.crt}')
[[ -n $token && -n $ca ]] || { echo "secret $ns/$secret has no token yet" >&2; exit 1; }
cat <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: berth
    cluster:
      server: $server
      certificate-authority-data: $ca
users:
  - name: berth-agent
    user:
      token: $token
contexts:
  - name: berth
    context: {cluster: berth, user: berth-agent}
current-context: berth
KUBECONFIG
