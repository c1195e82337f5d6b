#!/usr/bin/env bash
# down.sh DIR - delete the node's workloads, stop the node and the control plane that up.sh
# started (by PID), and put the host back as it was (tests/cluster/host-state.sh checks it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${1:?usage: down.sh DIR}"
[[ -d "$DIR/node" ]] && "$HERE/node.sh" stop "$DIR"
"$HERE/local-k8s.sh" stop "$DIR"
