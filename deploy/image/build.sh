#!/usr/bin/env bash
# build.sh [OUT_DIR] - the one definition of Ship's container image, built with no Docker daemon
# and no registry. Prints the path of the image tarball (`docker save` format), which
#   ctr -n k8s.io images import FILE     # containerd (what tests/cluster/node.sh does)
#   docker load -i FILE                   # or podman load
# accept. The tests install exactly this file in their cluster, so what they run is what users get.
#
# The image (ghcr.io/ship-rs/shipd:<version>), from an empty root:
#   /shipd                       shipd, `cargo build --release -p shipd`
#   /lib, /lib64                 the shared libraries shipd links (from `ldd`: glibc, OpenSSL...)
#   /usr/local/bin/kubectl       pinned kubectl v1.35 for `kubectl kustomize` (deploy/image/tools.sh)
#   /usr/local/bin/helm          pinned helm v4 for `helm template` of charts in the repository (same)
#   /etc/ssl/certs/ca-certificates.crt, /etc/passwd (nonroot 65532), /tmp, /var/lib/ship
# It runs as 65532:65532 with HOME=/tmp; the chart mounts /tmp and /var/lib/ship as emptyDirs on
# a read-only root. OUT_DIR defaults to ~/.cache/ship/images. Cargo's target: CARGO_TARGET_DIR.
set -euo pipefail
# (readlink: run through a symlink to deploy/, as the quick start's test does, it still finds the repository)
ROOT="$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)"
OUT="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/images}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
VERSION="$(awk -F'"' '/^appVersion:/ {print $2}' "$ROOT/charts/ship/Chart.yaml")"
REF="ghcr.io/ship-rs/shipd:$VERSION"
log() { printf '[image %(%T)T] %s\n' -1 "$*" >&2; }

command -v python3 >/dev/null || { log "ERROR: python3 is required"; exit 1; }
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || {
  log "installing Debian's ca-certificates (apt-get)"; apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null; }

log "cargo build --release -p shipd"
cargo build --release --locked -p shipd --manifest-path "$ROOT/Cargo.toml" >&2
KUBECTL="$("$ROOT/deploy/image/tools.sh" kubectl)"
HELM="$("$ROOT/deploy/image/tools.sh" helm)"

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
install -D -m 0755 "$CARGO_TARGET_DIR/release/shipd" "$rootfs/shipd"
strip --strip-debug "$rootfs/shipd" 2>/dev/null || true
# every library the dynamic loader would load, at the path it loads it from
ldd "$rootfs/shipd" | awk '/=>/ {print $3} !/=>/ && $1 ~ /^\// {print $1}' | while read -r lib; do
  [[ -n "$lib" && -e "$lib" ]] || continue
  install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
install -D -m 0755 "$KUBECTL" "$rootfs/usr/local/bin/kubectl"
install -D -m 0755 "$HELM" "$rootfs/usr/local/bin/helm"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
install -d -m 1777 "$rootfs/tmp"
install -d -m 0755 "$rootfs/var/lib/ship"

mkdir -p "$OUT"
file="$OUT/shipd-$VERSION.tar"
python3 "$ROOT/deploy/image/mkimage.py" "$rootfs" "$REF" "$file" --entrypoint '["/shipd"]' \
  --user 65532:65532 --env HOME=/tmp --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --label "org.opencontainers.image.version=$VERSION" --label "org.opencontainers.image.source=https://github.com/ship-rs/ship" >&2
log "$REF: $(du -h "$file" | cut -f1) ($(du -sh "$rootfs/shipd" | cut -f1) shipd, $(du -sh "$rootfs/usr/local/bin/kubectl" | cut -f1) kubectl, $(du -sh "$rootfs/usr/local/bin/helm" | cut -f1) helm)"
echo "$file"
