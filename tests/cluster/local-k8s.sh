#!/usr/bin/env bash
# local-k8s.sh - a real Kubernetes control plane (etcd + kube-apiserver, optionally
# kube-controller-manager) on 127.0.0.1, at one of two versions (LOCAL_K8S_VERSION):
#   1.20.2 (default), installed only from Debian's packages:
#   * etcd                : Debian package etcd-server (bookworm: 3.4.23)
#   * kube-apiserver,
#     kube-controller-manager : built with Debian's Go (golang-go, bookworm: 1.19) from
#                           Debian's source package "kubernetes" (bookworm:
#                           1.20.5+really1.20.2-1.1+deb12u1 = upstream v1.20.2, vendored deps)
#   1.36.2: the prebuilt static binaries (and etcd 3.5.30) that ../shared/k8s/v1.36.2 carries
#           (LOCAL_K8S_PREBUILT), unpacked and checked against their SHA256SUMS; no registry
#           here has a newer Kubernetes, and nothing is downloaded.
# The node's parts (kubelet, kube-scheduler, kube-proxy) come from the same place; tests/cluster/
# node.sh runs them. Each version is installed in its own prefix, so both can be cached at once.
#
# Usage:
#   local-k8s.sh install            # once per machine (measured 7.5 min on 2 cores); idempotent
#   local-k8s.sh start [DIR]        # start in DIR (default: new mktemp dir); prints DIR
#   local-k8s.sh stop  [DIR]        # stop the processes recorded in DIR, then delete DIR
#   local-k8s.sh env   [DIR]        # print the env file (source it: KUBECONFIG etc.)
#   local-k8s.sh uninstall          # remove the built binaries and the deb-src entry
# If DIR is omitted for stop/env, the last started DIR (recorded in $LOCAL_K8S_STATE) is used.
#
# Env knobs:
#   LOCAL_K8S_VERSION  1.20.2 (default) or 1.36.2
#   LOCAL_K8S_PREFIX   where binaries go              (default ~/.cache/ship/k8s-v$LOCAL_K8S_VERSION)
#   LOCAL_K8S_PREBUILT where the 1.36.2 binaries are  (default ../shared/k8s/v1.36.2 beside the repo)
#   LOCAL_K8S_DEB_VER  Debian source version to build (default 1.20.5+really1.20.2-1.1+deb12u1)
#   LOCAL_K8S_KCM      1 = also run kube-controller-manager (default 1)
#   LOCAL_K8S_TIMEOUT  seconds to wait for readiness    (default 120)
#   LOCAL_K8S_STATE    file remembering the last DIR  (default /tmp/local-k8s.last)
#   LOCAL_K8S_NODE_IP  set (by tests/cluster/up.sh): the control plane is made ready for a real
#                      node at this IP (tests/cluster/node.sh): the apiserver also listens there
#                      and advertises it as the `kubernetes` Service's endpoint, authorizes
#                      kubelets (Node,RBAC), reaches them with a client cert, and the PKI holds
#                      the node's certs. Without it the apiserver listens on 127.0.0.1 only.
# The Service range is 198.19.0.0/24 (reserved test space, never a private range).
set -euo pipefail

VERSION="${LOCAL_K8S_VERSION:-1.20.2}"
case "$VERSION" in
  1.20.2) MINOR=20 ;;
  1.36.2) MINOR=36 ;;
  *) printf 'local-k8s.sh: LOCAL_K8S_VERSION=%s: only 1.20.2 and 1.36.2 are known\n' "$VERSION" >&2; exit 2 ;;
esac
PREFIX="${LOCAL_K8S_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/k8s-v$VERSION}"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PREBUILT="${LOCAL_K8S_PREBUILT:-$REPO/../shared/k8s/v$VERSION}"
DEB_VER="${LOCAL_K8S_DEB_VER:-1.20.5+really1.20.2-1.1+deb12u1}"
WITH_KCM="${LOCAL_K8S_KCM:-1}"
TIMEOUT="${LOCAL_K8S_TIMEOUT:-120}"
NODE_IP="${LOCAL_K8S_NODE_IP:-}"
NODE_NAME="${LOCAL_K8S_NODE_NAME:-ship-node}"
SERVICE_CIDR=198.19.0.0/24
STATE="${LOCAL_K8S_STATE:-/tmp/local-k8s.last}"
BIN="$PREFIX/bin"
# 1.20 runs Debian's etcd 3.4; 1.36 the etcd 3.5 unpacked beside its binaries.
if (( MINOR >= 24 )); then ETCD="$BIN/etcd"; else ETCD=etcd; fi
# The control plane and the node's three, built in one make run from the same tree.
K8S_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

log() { printf '[local-k8s %(%T)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- install
deb_src_setup() {
  # deb-src for the mirror and suite that the machine already uses (no host names hard-coded).
  local codename uri f=/etc/apt/sources.list.d/local-k8s-src.sources
  codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  if apt-cache showsrc kubernetes 2>/dev/null | grep -q "^Version: ${DEB_VER}\$"; then return 0; fi
  uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  [[ -n "$uri" ]] || uri="$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)"
  [[ -n "$uri" ]] || die "cannot find the Debian mirror URI in /etc/apt/sources.list{,.d/debian.sources}"
  printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" "$codename" > "$f"
  apt-get update -qq
}

# 1.36.2: unpack the prebuilt binaries, check every checksum, install them only when all match.
install_prebuilt() {
  local b missing="" work
  for b in $K8S_BINARIES etcd; do [[ -x "$BIN/$b" ]] || missing=1; done
  if [[ -z "$missing" ]] && command -v openssl >/dev/null && command -v curl >/dev/null; then
    log "already installed: $("$BIN/kube-apiserver" --version), etcd $("$BIN/etcd" --version | awk 'NR==1{print $3}')"
    return 0
  fi
  [[ -f "$PREBUILT/SHA256SUMS" ]] || die "no prebuilt Kubernetes v$VERSION in $PREBUILT (set LOCAL_K8S_PREBUILT to the folder that holds its *.xz and SHA256SUMS)"
  if ! command -v xz >/dev/null || ! command -v openssl >/dev/null || ! command -v curl >/dev/null; then
    [[ $EUID -eq 0 ]] || die "install needs root (apt-get xz-utils openssl curl)"
    log "installing Debian's xz-utils, openssl and curl (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends xz-utils openssl curl ca-certificates >/dev/null
  fi
  log "unpacking Kubernetes v$VERSION and etcd from $PREBUILT ..."
  work="$(mktemp -d /tmp/local-k8s-unpack.XXXXXX)"
  for b in $K8S_BINARIES etcd; do xz -dc "$PREBUILT/$b.xz" > "$work/$b" || { rm -rf "$work"; die "cannot unpack $PREBUILT/$b.xz"; }; done
  ( cd "$work" && sha256sum --quiet -c "$PREBUILT/SHA256SUMS" ) || { rm -rf "$work"; die "checksums of $PREBUILT do not match: not installed"; }
  install -d "$BIN"
  for b in $K8S_BINARIES etcd; do install -m0755 "$work/$b" "$BIN/"; done
  rm -rf "$work"
  log "installed: $("$BIN/kube-apiserver" --version) in $BIN; etcd $("$BIN/etcd" --version | awk 'NR==1{print $3}')"
}

do_install() {
  if [[ "$VERSION" != 1.20.2 ]]; then install_prebuilt; return; fi
  local b missing=""
  for b in $K8S_BINARIES; do [[ -x "$BIN/$b" ]] || missing=1; done
  if [[ -z "$missing" ]] && command -v etcd >/dev/null \
     && command -v openssl >/dev/null && command -v curl >/dev/null; then
    log "already installed: $("$BIN/kube-apiserver" --version), etcd $(etcd --version | awk 'NR==1{print $3}')"
    return 0
  fi
  [[ $EUID -eq 0 ]] || die "install needs root (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # etcd-server's postinst only starts a service where systemd runs; our etcd uses its own ports anyway.
  apt-get install -y -qq --no-install-recommends golang-go etcd-server rsync make openssl curl ca-certificates >/dev/null
  deb_src_setup
  local work; work="$(mktemp -d /tmp/local-k8s-build.XXXXXX)"
  # the pinned version; if the mirror has moved on (e.g. a new +deb12uN), take the suite's current one
  ( cd "$work" && { apt-get source -qq --download-only "kubernetes=${DEB_VER}" \
      || apt-get source -qq --download-only "kubernetes/$(. /etc/os-release && echo "$VERSION_CODENAME")"; } )
  tar -xzf "$work"/kubernetes_*.orig.tar.gz -C "$work"
  local src; src="$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -1)"
  [[ -d "$src/vendor" && -d "$src/cmd/kube-apiserver" ]] || die "unexpected source layout in $src"
  # REQUIRED with Go >= 1.18: v1.20's vendored modern-go/reflect2 v1.0.1 corrupts memory in map
  # iteration (kube-apiserver dies with "fatal error: fault" on the first custom-resource write).
  # Swap in reflect2 1.0.2 + json-iterator 1.1.12 from Debian's (source-only) -dev packages.
  ( cd "$work" && apt-get download -qq golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev \
      && for d in golang-github-*.deb; do dpkg-deb -x "$d" "$work/gocode"; done )
  local pkg
  for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    [[ -f "$work/gocode/usr/share/gocode/src/$pkg/go.mod" || -n "$(ls "$work/gocode/usr/share/gocode/src/$pkg/"*.go)" ]] \
      || die "missing $pkg in Debian package"
    rm -f "$src/vendor/$pkg/"*.go "$src/vendor/$pkg/"*.s
    find "$work/gocode/usr/share/gocode/src/$pkg" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
      -exec cp {} "$src/vendor/$pkg/" \;
  done
  log "building $K8S_BINARIES from $(basename "$src") with $(go version) ..."
  # upstream's build: GOPATH mode, vendored deps, code generators, version stamped from the tarball
  ( cd "$src" && env -u GOFLAGS -u GOPATH -u GO111MODULE HOME="${HOME:-/root}" \
      make WHAT="$(printf 'cmd/%s ' $K8S_BINARIES)" >"$work/build.log" 2>&1 ) \
    || { tail -30 "$work/build.log" >&2; die "build failed (log: $work/build.log)"; }
  install -d "$BIN"
  for b in $K8S_BINARIES; do install -m0755 "$src/_output/bin/$b" "$BIN/"; done
  rm -rf "$work"
  log "installed: $("$BIN/kube-apiserver" --version) in $BIN; etcd $(etcd --version | awk 'NR==1{print $3}')"
}

# ---------------------------------------------------------------- helpers
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# pick_port: a free loopback port, reserved. Ports come from below the kernel's ephemeral range
# (an outgoing connection can take an ephemeral port between "seen free" and etcd's bind: that
# failed CI once), and each is reserved by an exclusive flock on /tmp/ship-ports/PORT.lock whose
# file descriptor the daemons started afterwards inherit, so it stays held while they run. The
# test processes take the same locks (tests/testkit/src/ports.rs).
PORT_LOCKS=/tmp/ship-ports
pick_port() {
  local low p i fd span
  low="$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
  (( low > 32768 )) && low=32768
  (( low < 21000 )) && low=21000
  span=$(( low - 20000 ))
  mkdir -p "$PORT_LOCKS"
  for i in $(seq 1 500); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % span ))
    exec {fd}>"$PORT_LOCKS/$p.lock"
    if flock -n "$fd" && port_free "$p"; then PICKED_PORT="$p"; return 0; fi
    exec {fd}>&-
  done
  die "no free port found below $low"
}
spawn() {   # spawn NAME CMD... : run detached in its own session, pid in $DIR/NAME.pid, log in $DIR/logs/NAME.log
  local name="$1"; shift
  setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$DIR/$name.pid" "$@" \
    >"$DIR/logs/$name.log" 2>&1 </dev/null &
  local i; for i in $(seq 1 50); do [[ -s "$DIR/$name.pid" ]] && return 0; sleep 0.1; done
  die "$name did not start"
}


gen_pki() {   # CA, serving cert, client certs, service-account key (ECDSA P-256, PKCS#8)
  local p="$DIR/pki"; mkdir -p "$p"; cd "$p"
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  key ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=local-k8s-ca" -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  sign() {   # sign NAME SUBJECT EXTENSIONS
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    printf '%b\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  }
  local base="basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment"
  # 198.19.0.1: the `kubernetes` Service's ClusterIP, which pods dial
  sign apiserver "/CN=kube-apiserver" \
    "$base\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:198.19.0.1${NODE_IP:+,IP:$NODE_IP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign admin "/O=system:masters/CN=local-admin" "$base\nextendedKeyUsage=clientAuth"
  sign kcm "/CN=system:kube-controller-manager" "$base\nextendedKeyUsage=clientAuth"
  if [[ -n "$NODE_IP" ]]; then   # the node's parts (tests/cluster/node.sh)
    local cli="$base\nextendedKeyUsage=clientAuth"
    sign scheduler "/CN=system:kube-scheduler" "$cli"
    sign proxy "/CN=system:kube-proxy" "$cli"
    sign kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "$cli"
    sign kubelet-serving "/CN=$NODE_NAME" "$base\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME"
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$cli"
  fi
  key sa.key
  openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
  TOKEN="$(openssl rand -hex 24)"
  printf '%s,local-admin,local-admin,"system:masters"\n' "$TOKEN" > tokens.csv
  chmod 600 ./*.key tokens.csv
  cd - >/dev/null
}

kubeconfig() {   # kubeconfig FILE CERTNAME [with-token]
  local tok_user="" tok_ctx=""
  if [[ -n "${3:-}" ]]; then
    tok_user="- name: token
  user:
    token: ${TOKEN}"
    tok_ctx="- name: local-token
  context: {cluster: local, user: token}"
  fi
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:${API_PORT}
    certificate-authority: ${DIR}/pki/ca.crt
users:
- name: $2
  user:
    client-certificate: ${DIR}/pki/$2.crt
    client-key: ${DIR}/pki/$2.key
${tok_user}
contexts:
- name: local
  context: {cluster: local, user: $2}
${tok_ctx}
current-context: local
EOF
  chmod 600 "$1"
}

wait_for() {   # wait_for WHAT CMD... (retries until CMD succeeds or TIMEOUT)
  local what="$1"; shift; local deadline=$(( SECONDS + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { log "timed out waiting for $what"; return 1; }
    sleep 0.25
  done
}

api_ok() {   # api_ok PATH -> body must be "ok"
  [[ "$(curl -sf --max-time 2 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
        "https://127.0.0.1:${API_PORT}$1")" == ok ]]
}

api_get() {   # api_get PATH: the object's JSON, as the admin
  curl -sf --max-time 2 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
    "https://127.0.0.1:${API_PORT}$1"
}
sa_ready() {   # ready for Pods: the default ServiceAccount and what its Pods mount exist
  if (( MINOR >= 24 )); then
    # no token Secrets since 1.24: Pods get a projected token and the kube-root-ca.crt ConfigMap
    api_get /api/v1/namespaces/default/serviceaccounts/default >/dev/null \
      && api_get /api/v1/namespaces/default/configmaps/kube-root-ca.crt >/dev/null
  else   # 1.20: the legacy token controller gives it a token Secret
    api_get /api/v1/namespaces/default/serviceaccounts/default | grep -q '"secrets"'
  fi
}

# ---------------------------------------------------------------- start / stop
do_start() {
  command -v "$ETCD" >/dev/null && [[ -x "$BIN/kube-apiserver" ]] || die "v$VERSION not installed: run 'LOCAL_K8S_VERSION=$VERSION $0 install'"
  DIR="${1:-$(mktemp -d /tmp/local-k8s.XXXXXX)}"
  mkdir -p "$DIR/logs" "$DIR/etcd"; DIR="$(cd "$DIR" && pwd)"
  touch "$DIR/.local-k8s"            # marker: stop may delete this dir
  # on any failure: stop what was started, keep DIR (logs) for inspection
  trap 'rc=$?; if (( rc != 0 )); then log "start failed; logs kept in $DIR/logs"; LOCAL_K8S_KEEP=1 do_stop "$DIR"; fi' EXIT
  local t0=$EPOCHREALTIME t_pki t_etcd t_api
  gen_pki
  t_pki=$(elapsed "$t0")
  # not $(pick_port): a subshell would drop the lock's file descriptor
  pick_port; ETCD_PORT="${LOCAL_K8S_ETCD_PORT:-$PICKED_PORT}"
  pick_port; ETCD_PEER_PORT="$PICKED_PORT"
  pick_port; API_PORT="${LOCAL_K8S_API_PORT:-$PICKED_PORT}"
  pick_port; KCM_PORT="$PICKED_PORT"

  spawn etcd "$ETCD" --name local --data-dir "$DIR/etcd" --logger zap --log-outputs stderr --log-level warn \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new
  wait_for etcd curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" || { tail -20 "$DIR/logs/etcd.log" >&2; return 1; }
  t_etcd=$(elapsed "$t0")

  local node_flags=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --authorization-mode RBAC
                    --endpoint-reconciler-type none)
  if [[ -n "$NODE_IP" ]]; then
    # pods reach the apiserver through the `kubernetes` Service, whose endpoint is NODE_IP:API_PORT
    node_flags=(--bind-address 0.0.0.0 --advertise-address "$NODE_IP"
      --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction
      --kubelet-client-certificate "$DIR/pki/apiserver-kubelet-client.crt"
      --kubelet-client-key "$DIR/pki/apiserver-kubelet-client.key"
      --kubelet-certificate-authority "$DIR/pki/ca.crt" --kubelet-preferred-address-types InternalIP)
  fi
  # 1.24 removed the insecure port and its flag (and kube-controller-manager's --port)
  local insecure_port=() kcm_port=()
  if (( MINOR < 24 )); then insecure_port=(--insecure-port 0); kcm_port=(--port 0); fi
  # The audit log records every write to Ship's kinds (who, when, with what user agent): the
  # fencing test reads it to show that two shipd replicas never write in the same second.
  cat > "$DIR/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete]
    resources: [{group: ship.dev}]
  - level: None
EOF
  spawn kube-apiserver "$BIN/kube-apiserver" \
    --audit-policy-file "$DIR/audit-policy.yaml" --audit-log-path "$DIR/logs/audit.log" \
    --audit-log-format json --audit-log-maxsize 100 \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --secure-port "$API_PORT" "${insecure_port[@]}" "${node_flags[@]}" \
    --tls-cert-file "$DIR/pki/apiserver.crt" --tls-private-key-file "$DIR/pki/apiserver.key" \
    --client-ca-file "$DIR/pki/ca.crt" --token-auth-file "$DIR/pki/tokens.csv" \
    --service-account-key-file "$DIR/pki/sa.pub" --service-account-signing-key-file "$DIR/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged=true --profiling=false --cert-dir "$DIR/pki/generated" --v=1
  wait_for "kube-apiserver /readyz" api_ok /readyz || { tail -30 "$DIR/logs/kube-apiserver.log" >&2; return 1; }
  t_api=$(elapsed "$t0")

  kubeconfig "$DIR/kubeconfig" admin with-token
  kubeconfig "$DIR/kcm.kubeconfig" kcm
  if [[ -n "$NODE_IP" ]]; then
    kubeconfig "$DIR/scheduler.kubeconfig" scheduler
    kubeconfig "$DIR/kubelet.kubeconfig" kubelet-client
    kubeconfig "$DIR/proxy.kubeconfig" proxy
  fi
  if [[ "$WITH_KCM" == 1 ]]; then
    spawn kube-controller-manager "$BIN/kube-controller-manager" \
      --kubeconfig "$DIR/kcm.kubeconfig" \
      --authentication-kubeconfig "$DIR/kcm.kubeconfig" --authorization-kubeconfig "$DIR/kcm.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$KCM_PORT" "${kcm_port[@]}" --leader-elect=false \
      --use-service-account-credentials=true --service-account-private-key-file "$DIR/pki/sa.key" \
      --root-ca-file "$DIR/pki/ca.crt" \
      --cluster-signing-cert-file "$DIR/pki/ca.crt" --cluster-signing-key-file "$DIR/pki/ca.key" \
      --controllers '*' --v=1 \
      --flex-volume-plugin-dir "$DIR/flexvolume"   # not /usr/libexec/kubernetes on the host
    # ready for workloads once the default ServiceAccount (and, in 1.20, its token Secret) exist
    wait_for "default ServiceAccount" sa_ready \
      || { tail -30 "$DIR/logs/kube-controller-manager.log" >&2; return 1; }
  fi

  cat > "$DIR/env" <<EOF
export KUBECONFIG=$DIR/kubeconfig
export LOCAL_K8S_DIR=$DIR
export LOCAL_K8S_SERVER=https://127.0.0.1:$API_PORT
export LOCAL_K8S_TOKEN=$TOKEN
export LOCAL_K8S_CA=$DIR/pki/ca.crt
export LOCAL_K8S_ETCD=http://127.0.0.1:$ETCD_PORT
export LOCAL_K8S_BIN=$BIN
export LOCAL_K8S_VERSION=$VERSION
export LOCAL_K8S_AUDIT_LOG=$DIR/logs/audit.log
EOF
  # not LOCAL_K8S_NODE_IP: that is a knob of this script, which a second control plane started
  # from a shell that sourced this file must not inherit
  [[ -z "$NODE_IP" ]] || printf 'export SHIP_TESTBED_NODE_IP=%s\nexport SHIP_TESTBED_NODE_NAME=%s\n' "$NODE_IP" "$NODE_NAME" >> "$DIR/env"
  echo "$DIR" > "$STATE"
  trap - EXIT
  log "ready: Kubernetes v$VERSION, apiserver https://127.0.0.1:$API_PORT (pki ${t_pki}s, etcd healthy ${t_etcd}s, apiserver readyz ${t_api}s, all ready $(elapsed "$t0")s); source $DIR/env"
  echo "$DIR"
}

stop_one() {   # stop_one NAME BINARY-BASENAME
  local f="$DIR/$1.pid" pid i
  [[ -s "$f" ]] || return 0
  pid="$(cat "$f")"
  # only signal the process we started (pid may have been reused)
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$2"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

do_stop() {
  DIR="${1:-$(cat "$STATE" 2>/dev/null || true)}"
  [[ -n "$DIR" && -d "$DIR" ]] || { log "nothing to stop"; return 0; }
  stop_one kube-controller-manager kube-controller-manager
  stop_one kube-apiserver kube-apiserver
  stop_one etcd "$(basename "$ETCD")"
  if [[ -f "$DIR/.local-k8s" && "${LOCAL_K8S_KEEP:-0}" != 1 ]]; then rm -rf "$DIR"; fi
  [[ "$(cat "$STATE" 2>/dev/null || true)" == "$DIR" ]] && rm -f "$STATE"
  log "stopped $DIR"
}

do_uninstall() {   # remove what install added (binaries, deb-src entry); Debian packages are left installed
  rm -rf "$PREFIX" /etc/apt/sources.list.d/local-k8s-src.sources
  log "removed $PREFIX and the deb-src entry (packages golang-go etcd-server rsync stay installed)"
}

case "${1:-}" in
  install) do_install ;;
  uninstall) do_uninstall ;;
  start)   do_start "${2:-}" ;;
  stop)    do_stop "${2:-}" ;;
  env)     cat "${2:-$(cat "$STATE")}/env" ;;
  *) echo "usage: $0 install | start [DIR] | stop [DIR] | env [DIR] | uninstall" >&2; exit 2 ;;
esac
