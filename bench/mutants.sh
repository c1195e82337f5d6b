#!/usr/bin/env bash
# mutants.sh - mutation testing (cargo-mutants) of the pure core (ship-core: every decision
# machine, the status vocabulary, the rules) and of ship-render's validation of manifests.
# cargo-mutants changes one expression at a time (a `>` into `>=`, a function body into
# `Default::default()`, ...) and runs the crate's tests: a mutant no test notices is a rule no
# test pins. Every surviving mutant is either killed by a new test or listed in
# .cargo/mutants.toml with the reason it cannot be told apart. docs/reliability.md has the score.
#
# Installs cargo-mutants with `cargo install` the first time (and says so). Extra arguments go
# to both runs (e.g. `-j 2`, or `--in-diff` on a diff). Output: target/mutants/<crate>/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
log() { printf '[mutants %(%T)T] %s\n' -1 "$*" >&2; }
if ! cargo mutants --version >/dev/null 2>&1; then
  log "installing cargo-mutants with cargo install (one time)"
  cargo install --locked cargo-mutants
fi
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/mutants"
mkdir -p "$OUT"
rc=0
log "ship-core"
cargo mutants --package ship-core --output "$OUT/ship-core" "$@" || rc=1
log "ship-render's validation (validate.rs)"
cargo mutants --package ship-render --file crates/ship-render/src/validate.rs --output "$OUT/ship-render" "$@" || rc=1
for crate in ship-core ship-render; do
  dir="$OUT/$crate/mutants.out"
  caught=$(wc -l < "$dir/caught.txt"); missed=$(wc -l < "$dir/missed.txt")
  timeout=$(wc -l < "$dir/timeout.txt"); unviable=$(wc -l < "$dir/unviable.txt")
  log "$crate: $caught caught, $missed missed, $timeout timed out, $unviable unviable;" \
      "score $(( 100 * (caught + timeout) / (caught + timeout + missed) ))% (caught / viable)"
done
exit "$rc"
