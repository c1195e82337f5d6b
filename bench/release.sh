#!/usr/bin/env bash
# release.sh - the release engine's benchmarks on a real local control plane:
#   applying 500 objects (Ship vs kubectl apply --server-side, same apiserver, same run),
#   rollout healthy -> first post-deployment test, and test failure -> rollback applied;
#   and the API requests one good and one rolled-back release cost the apiserver.
#
# Builds shipd in release mode, starts the control plane (installing
# it the first time, see tests/cluster/up.sh), runs `cargo bench -p ship-e2e --bench release`,
# and stops everything it started. ROUNDS and OBJECTS tune the run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
log() { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }

log "building shipd (release)"
cargo build --release --locked -p shipd
DIR="$(tests/cluster/up.sh)"   # control plane and the real node
trap 'tests/cluster/down.sh "$DIR"' EXIT
# shellcheck disable=SC1091
source "$DIR/env"
log "control plane up: $LOCAL_K8S_SERVER"
cargo bench --locked -p ship-e2e --bench release
# API requests per release (verb and resource, from apiserver_request_total).
cargo bench --locked -p ship-e2e --bench requests
