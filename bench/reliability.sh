#!/usr/bin/env bash
# reliability.sh [FUZZ_SECONDS] [SOAK_ITERATIONS] - the long part of the reliability and security
# suite (the fast part runs in tests/run.sh): each fuzz target for FUZZ_SECONDS (default 300),
# then the soak with SOAK_ITERATIONS (default 100: 202 releases).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/fuzz/run.sh" "${1:-300}"
"$ROOT/bench/soak.sh" "${2:-100}"
