#!/usr/bin/env bash
# down.sh DIR - stop the kubelet stand-in and the control plane started by up.sh, by PID.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${1:?usage: down.sh DIR}"
if [[ -s "$DIR/kubelet-standin.pid" ]]; then
  pid="$(cat "$DIR/kubelet-standin.pid")"
  if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q kubelet-standin; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/kubelet-standin.pid"
fi
"$HERE/local-k8s.sh" stop "$DIR"
