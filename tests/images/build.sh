#!/usr/bin/env bash
# build.sh [OUT_DIR] - the images the test bed's node runs besides Ship's own
# (deploy/image/build.sh), built here with no registry, written as `docker save` tarballs that
# tests/cluster/node.sh imports into containerd. Prints OUT_DIR (default ~/.cache/ship/images).
#   pause.tar  k8s.gcr.io/pause:3.2, containerd's sandbox image: Kubernetes' own
#              build/pause/linux/pause.c (v1.20.2, Apache-2.0, kept here as pause.c, so that
#              either Kubernetes version's test bed builds it), gcc -static
#   pause-registry.tar  the same as registry.k8s.io/pause:3.2 (docs/quick-start.md's example app)
#   app.tar    ship.dev/demo-app:1, the demo's shop and the tests' app: busybox (Debian's
#              busybox-static) httpd serving /www on :8080, under a shell that ends on SIGTERM
#              (httpd as PID 1 would ignore it and wait out the grace period). Its answers come from its
#              configuration: the manifests mount a ConfigMap at /www, so GET /health answers
#              the ConfigMap's `health` key, and a commit that breaks the ConfigMap breaks the app.
#              The same image runs the Job tests (`sh -c ...`).
# Each tarball is rebuilt only when its inputs change (a digest of them sits beside it).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/images}"
PAUSE_C="$ROOT/tests/images/pause.c"
MKIMAGE="$ROOT/deploy/image/mkimage.py"
log() { printf '[images %(%T)T] %s\n' -1 "$*" >&2; }
mkdir -p "$OUT"

fresh() {   # fresh NAME INPUTS...: true when OUT/NAME.tar was built from these inputs
  local name="$1" sum; shift
  sum="$(cat "$@" "$0" "$MKIMAGE" | sha256sum | cut -d' ' -f1)"
  [[ -f "$OUT/$name.tar" && "$(cat "$OUT/$name.sum" 2>/dev/null)" == "$sum" ]] && return 0
  echo "$sum" > "$OUT/$name.sum.new"; return 1
}
done_() { mv "$OUT/$1.sum.new" "$OUT/$1.sum"; }

# (no grep -q: its early exit would fail the pipe under pipefail)
[[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -x httpd >/dev/null || {
  log "installing Debian's busybox-static and gcc (apt-get)"; apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static gcc libc6-dev >/dev/null; }

work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
if ! fresh pause "$PAUSE_C"; then
  mkdir -p "$work/pause"
  gcc -Os -Wall -static -DVERSION=3.2 -o "$work/pause/pause" "$PAUSE_C"
  python3 "$MKIMAGE" "$work/pause" k8s.gcr.io/pause:3.2 "$OUT/pause.tar" --entrypoint '["/pause"]' >&2
  done_ pause
fi
# The same pause image under its current registry's name: docs/quick-start.md's example app
# runs it, as a user's cluster would pull it.
if ! fresh pause-registry "$PAUSE_C"; then
  mkdir -p "$work/pause-registry"
  gcc -Os -Wall -static -DVERSION=3.2 -o "$work/pause-registry/pause" "$PAUSE_C"
  python3 "$MKIMAGE" "$work/pause-registry" registry.k8s.io/pause:3.2 "$OUT/pause-registry.tar" --entrypoint '["/pause"]' >&2
  done_ pause-registry
fi
if ! fresh app /bin/busybox; then
  A="$work/app"; mkdir -p "$A"/{bin,dev,etc,proc,sys,www}; install -d -m 1777 "$A/tmp"
  cp /bin/busybox "$A/bin/busybox"
  for l in sh httpd wget cat echo env head hostname id ls ps sleep sed grep true false date; do ln -s busybox "$A/bin/$l"; done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$A/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$A/etc/group"
  echo 'no configuration mounted' > "$A/www/health"
  python3 "$MKIMAGE" "$A" ship.dev/demo-app:1 "$OUT/app.tar" \
    --entrypoint '["/bin/sh","-c","trap \"exit 0\" TERM; httpd -f -v -p 8080 -h /www & wait"]' >&2
  done_ app
fi
echo "$OUT"
