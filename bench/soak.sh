#!/usr/bin/env bash
# soak.sh [ITERATIONS] - the soak at full length: ITERATIONS (default 100) commits pushed to both
# branches, one in four breaking the app: 2 x ITERATIONS + 2 releases on the real control plane.
# After each, the deployed commit, the inventory, the cluster's objects and the metrics must
# agree; shipd's RSS must stay flat. Prints the releases, the time and the RSS (heap and mapped
# files) every 50 iterations and at the end.
# Heap profile: SHIP_SHIPD_WRAPPER="heaptrack -o /tmp/ht/soak" bench/soak.sh 300, then
# heaptrack_print -f /tmp/ht/soak.zst [-d /tmp/ht/shorter-run.zst] --print-leaks 1.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
cargo build --quiet --locked --workspace --bins --tests
DIR="$(tests/cluster/up.sh)"   # control plane and the real node
trap 'tests/cluster/down.sh "$DIR"' EXIT
# shellcheck disable=SC1091
source "$DIR/env"
SHIP_SOAK_ITERATIONS="${1:-100}" cargo nextest run --locked -p ship-e2e --run-ignored all --no-capture \
  --test soak 2>&1 | grep -E "^soak:|PASS|FAIL|panicked"
