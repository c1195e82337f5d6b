#!/usr/bin/env bash
# up.sh - start a real local Kubernetes for Ship's tests and demo: the control plane
# (local-k8s.sh: etcd, kube-apiserver, kube-controller-manager) and one real node beside it
# (node.sh: kube-scheduler, containerd + runc, bridge CNI, kubelet, kube-proxy).
#
#   DIR=$(tests/cluster/up.sh)      # prints the state dir; `source $DIR/env` sets KUBECONFIG
#   tests/cluster/down.sh "$DIR"    # deletes the workloads, stops everything, restores the host
#
# LOCAL_K8S_VERSION picks the Kubernetes version (1.20.2, the default, or 1.36.2; local-k8s.sh).
# Installs on first use: Debian packages, and the Kubernetes v1.20.2 binaries built from
# Debian's source package, cached under ~/.cache/ship/ (about 15 min once on 2 cores).
# The node imports every image tarball in SHIP_IMAGES (default ~/.cache/ship/images; built by
# tests/images/build.sh and deploy/image/build.sh). SHIP_NODE_IP: the node's address
# (default 192.0.2.2, added to lo if no interface has it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
IMAGES="${SHIP_IMAGES:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/images}"
log() { printf '[up %(%T)T] %s\n' -1 "$*" >&2; }

"$HERE/local-k8s.sh" install >&2
"$HERE/node.sh" install >&2
[[ -f "$IMAGES/pause.tar" ]] || "$HERE/../images/build.sh" "$IMAGES" >/dev/null
DIR="$(LOCAL_K8S_NODE_IP="${SHIP_NODE_IP:-192.0.2.2}" "$HERE/local-k8s.sh" start)"
trap 'rc=$?; if (( rc != 0 )); then "$HERE/down.sh" "$DIR" || true; fi' EXIT
"$HERE/node.sh" start "$DIR" "$IMAGES" >&2
printf 'export LOCAL_K8S_CONTAINERD=%s\n' "$DIR/node/containerd/containerd.sock" >> "$DIR/env"
trap - EXIT
echo "$DIR"
