#!/usr/bin/env bash
# run.sh - Ship's whole test suite, on a fresh machine of this kind:
#   formatting, clippy, unit tests, and integration tests on a real local control plane.
#
# It installs what it needs and says so: Debian packages (etcd-server, golang-go, openssl, curl,
# and prometheus for promtool and the scrape test) and a kube-apiserver/kube-controller-manager
# v1.20.2 built from Debian's source package
# (cached in ~/.cache/ship/, ~8 min the first time), and cargo-nextest if it is missing.
# Cargo's build directory is cached in ~/.cache/ship/target (override with CARGO_TARGET_DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
log() { printf '[tests %(%T)T] %s\n' -1 "$*" >&2; }

command -v kubectl >/dev/null || { log "ERROR: kubectl is required on PATH"; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest with cargo install (one time)"
  cargo install --locked cargo-nextest
fi

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  log "installing Debian's prometheus package (promtool, and a Prometheus for the scrape test) with apt-get"
  [[ $EUID -eq 0 ]] || { log "ERROR: installing prometheus needs root (apt-get)"; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

log "helm, for the chart tests: $(tests/tools/helm.sh)"

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "building the workspace"
cargo build --workspace --bins --locked

DIR="$(SHIP_STANDIN="$CARGO_TARGET_DIR/debug/kubelet-standin" tests/cluster/up.sh)"
trap 'tests/cluster/down.sh "$DIR"' EXIT
# shellcheck disable=SC1091
source "$DIR/env"
log "control plane up: $LOCAL_K8S_SERVER"

# A failing test's message carries what it needs (the release, shipd's logs); a backtrace of the
# async runtime's frames would push it out of a log that keeps only its end. SHIP_TEST_BACKTRACE=1
# brings backtraces back.
export RUST_BACKTRACE="${SHIP_TEST_BACKTRACE:-0}"
# Unit tests and integration tests together; integration tests are #[ignore]d for plain `cargo test`.
cargo nextest run --workspace --locked --run-ignored all --no-fail-fast "$@"
