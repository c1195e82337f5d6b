#!/usr/bin/env bash
# bisect.sh - time from the first failure to the culprit named, for pushes of 8 and 50 commits
# (BISECT_COMMITS), against one release's time measured in the same run, on a real local
# control plane and node (started here, and stopped). docs/bisection.md has the figures.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
log() { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }
log "building shipd and kubectl-ship"
cargo build --locked -p shipd -p kubectl-ship
DIR="$(tests/cluster/up.sh)"
trap 'tests/cluster/down.sh "$DIR"' EXIT
# shellcheck disable=SC1091
source "$DIR/env"
log "control plane up: $LOCAL_K8S_SERVER"
cargo bench --locked -p ship-e2e --bench bisect
