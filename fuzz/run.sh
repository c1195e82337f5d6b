#!/usr/bin/env bash
# run.sh [SECONDS] - runs each fuzz target for SECONDS (default 60) with cargo-fuzz (libFuzzer),
# and prints how many inputs each tried. Installs cargo-fuzz with `cargo install` if missing.
# The stable toolchain is enough: RUSTC_BOOTSTRAP lets cargo-fuzz pass its sanitizer flags.
# A crash leaves its input under fuzz/artifacts/<target>/: add it as a regression test.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-60}"
command -v cargo-fuzz >/dev/null || { echo "[fuzz] installing cargo-fuzz (cargo install)" >&2; cargo install --locked cargo-fuzz; }
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/fuzz-target}"
# New inputs go to a corpus kept outside the clone; the committed seeds are read only.
CORPUS="${XDG_CACHE_HOME:-$HOME/.cache}/ship/fuzz-corpus"
for target in ship_yaml manifests webhook vars values; do
  mkdir -p "$CORPUS/$target"
  echo "[fuzz] $target for ${SECONDS_EACH}s" >&2
  cargo fuzz run "$target" "$CORPUS/$target" "seeds/$target" -- -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 \
    2> "/tmp/fuzz-$target.log" || { tail -40 "/tmp/fuzz-$target.log"; exit 1; }
  grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "/tmp/fuzz-$target.log" | tail -1
done
