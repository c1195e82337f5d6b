#!/usr/bin/env bash
# up.sh - start a real local control plane for Ship's tests and demo, plus the kubelet stand-in.
#
#   DIR=$(tests/cluster/up.sh)      # prints the state dir; `source $DIR/env` sets KUBECONFIG
#   tests/cluster/down.sh "$DIR"    # stops every process it started, by PID
#
# Installs the control plane on first use (etcd from Debian; kube-apiserver and
# kube-controller-manager v1.20.2 built from Debian's source package, cached under
# ~/.cache/ship/, ~8 min once on 2 cores). Needs the kubelet-standin binary built:
# SHIP_STANDIN=path/to/kubelet-standin (default: $CARGO_TARGET_DIR/debug/kubelet-standin).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STANDIN="${SHIP_STANDIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/kubelet-standin}"

log() { printf '[up %(%T)T] %s\n' -1 "$*" >&2; }

[[ -x "$STANDIN" ]] || { log "ERROR: $STANDIN not built (cargo build -p ship-testkit --bin kubelet-standin)"; exit 1; }
"$HERE/local-k8s.sh" install >&2
DIR="$("$HERE/local-k8s.sh" start)"
trap 'rc=$?; if (( rc != 0 )); then "$HERE/down.sh" "$DIR" || true; fi' EXIT
# shellcheck disable=SC1091
source "$DIR/env"

# The kubelet stand-in: registers Node ship-standin, makes Pods Ready, ends Job Pods.
setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$DIR/kubelet-standin.pid" "$STANDIN" \
  >"$DIR/logs/kubelet-standin.log" 2>&1 </dev/null &
for _ in $(seq 1 100); do
  kubectl get node ship-standin >/dev/null 2>&1 && break
  sleep 0.2
done
kubectl get node ship-standin >/dev/null 2>&1 \
  || { tail -20 "$DIR/logs/kubelet-standin.log" >&2; log "ERROR: kubelet stand-in did not register its node"; exit 1; }
log "kubelet stand-in running (node ship-standin)"
trap - EXIT
echo "$DIR"
