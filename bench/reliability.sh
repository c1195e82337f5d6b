#!/usr/bin/env bash
# reliability.sh [FUZZ_SECONDS] [SOAK_ITERATIONS] [SIMULATED_SEEDS] - the long part of the
# reliability and security suite (the fast part runs in tests/run.sh): each fuzz target for
# FUZZ_SECONDS (default 300), the soak with SOAK_ITERATIONS (default 100: 202 releases), and the
# release engine's simulated histories for SIMULATED_SEEDS seeds of 500 operations (default
# 2000: 1,000,000 operations, a few minutes in a release build).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SHIP_SIM_SEEDS="1-${3:-2000}" SHIP_SIM_OPERATIONS=500 \
  cargo test --locked --release -p ship-engine --test simulated_history -- --nocapture 2>&1 |
  grep -E "^simulated:|^without|^test result|seed [0-9]+:"
"$ROOT/fuzz/run.sh" "${1:-300}"
"$ROOT/bench/soak.sh" "${2:-100}"
