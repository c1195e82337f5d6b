#!/usr/bin/env bash
# release.sh - the release engine's benchmarks on a real local control plane:
#   full releases of 1,000 and 5,000 objects (Ship's render, dry run, apply and health vs
#   kubectl apply --server-side, same apiserver, same run), 1,000 at 1, 4 and 8 requests in
#   flight, a release that changes 1 object of 1,000 against kubectl's apply of all of them,
#   shipd's resident memory idle and after a 5,000-object release (against kubectl's peak
#   applying the same), rollout healthy -> first post-deployment test, test failure ->
#   rollback applied, the API requests one good and one rolled-back release cost the
#   apiserver, and an idle hour's requests at 100, 1,000 and 5,000 objects.
#
# Builds shipd in release mode, starts the control plane (installing
# it the first time, see tests/cluster/up.sh), runs `cargo bench -p ship-e2e --bench release`,
# and stops everything it started. ROUNDS and OBJECTS tune the run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
log() { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }

if [[ ! -x /usr/bin/time ]]; then
  log "installing GNU time (apt-get install time): kubectl's peak memory is the memory reference"
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -qq time >/dev/null
fi
log "building shipd (release)"
cargo build --release --locked -p shipd
DIR="$(tests/cluster/up.sh)"   # control plane and the real node
trap 'tests/cluster/down.sh "$DIR"' EXIT
# shellcheck disable=SC1091
source "$DIR/env"
log "control plane up: $LOCAL_K8S_SERVER"
cargo bench --locked -p ship-e2e --bench release
# API requests per release (verb and resource, from apiserver_request_total).
# shipd's client logs each request at debug level, so its own share can be told apart.
SHIP_SHIPD_WRAPPER="env RUST_LOG=info,ship_engine=debug,kube_client=debug" \
  cargo bench --locked -p ship-e2e --bench requests
# shipd's resident memory, idle and after a release of 5,000 objects.
cargo bench --locked -p ship-e2e --bench memory
