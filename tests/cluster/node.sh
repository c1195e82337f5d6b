#!/usr/bin/env bash
# node.sh - a real single Kubernetes node beside the control plane that local-k8s.sh started in
# DIR (with LOCAL_K8S_NODE_IP set): kube-scheduler, containerd + runc, bridge CNI, kubelet and
# kube-proxy, all of the control plane's version (LOCAL_K8S_VERSION in DIR/env: 1.20.2 from the
# Debian source build, or the prebuilt 1.36.2), the rest from Debian's packages.
# Adapted from ../shared/real-node (read its README for what each setting is for).
#
#   node.sh install            # Debian packages (containerd runc containernetworking-plugins ...)
#   node.sh start DIR IMAGES   # start the node, import every IMAGES/*.tar, wait until Ready
#   node.sh stop DIR           # delete workloads, stop the node, put the host back as it was
#
# What it changes on the host, all put back by stop (tests/cluster/host-state.sh checks it):
# sysctls (the kubelet's vm.overcommit_memory, kernel.panic, kernel.panic_on_oops; the bridge's
# ip_forward; kube-proxy's route_localnet), iptables chains, the `ship0` bridge, a `local` route
# for the Service range, /run/netns entries, mounts under DIR, kubepods cgroups, and the fixed
# paths /var/log/pods, /var/log/containers, /var/lib/cni, /run/containerd.
# Addresses: pods 198.18.0.0/24, Services 198.19.0.0/24 (reserved test space, not private).
# Nothing leaves the machine: the Service range is routed `local`, and the kubelet runs with
# AWS_EC2_METADATA_DISABLED (its in-tree credential provider dials 169.254.169.254 otherwise).
set -uo pipefail
POD_CIDR=198.18.0.0/24
SVC_CIDR=198.19.0.0/24
BRIDGE=ship0
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
 kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables"
HOSTPATHS="/var/log/pods /var/log/containers /var/lib/cni /run/netns /run/containerd /usr/libexec/kubernetes"
PACKAGES="containerd runc containernetworking-plugins iptables conntrack busybox-static socat ethtool gcc python3"

log() { printf '[node %(%T)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }
waitfor() {   # waitfor WHAT SECONDS CMD...
  local what=$1 t=$2; shift 2; local d=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do ((SECONDS < d)) || { log "timed out waiting for $what"; return 1; }; sleep 0.25; done
}

do_install() {
  local missing="" p
  for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  [[ -z "$missing" ]] && return 0
  [[ $EUID -eq 0 ]] || die "installing$missing needs root (apt-get)"
  log "installing Debian packages for the node:$missing (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

setup() {   # setup DIR: the paths and settings every command uses
  DIR="$(cd "${1:?DIR}" && pwd)"; N="$DIR/node"; RUN="$N/run"; L="$DIR/logs"
  # shellcheck disable=SC1091
  source "$DIR/env"
  [[ -n "${SHIP_TESTBED_NODE_IP:-}" ]] || die "$DIR was started without LOCAL_K8S_NODE_IP"
  NODE_IP="$SHIP_TESTBED_NODE_IP"; NODE="$SHIP_TESTBED_NODE_NAME"; BIN="$LOCAL_K8S_BIN"
  MINOR="$(echo "${LOCAL_K8S_VERSION:-1.20.2}" | cut -d. -f2)"
  SOCK="$N/containerd/containerd.sock"
}

spawn() {   # spawn NAME CMD...
  local n=$1; shift
  setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$RUN/$n.pid" "$@" >"$L/$n.log" 2>&1 </dev/null &
  local i; for i in $(seq 50); do [[ -s "$RUN/$n.pid" ]] && return 0; sleep 0.1; done
  die "$n did not start"
}

write_configs() {
  mkdir -p "$RUN/net.d" "$N/kubelet" "$N/containerd" "$N/cni/ipam" "$N/runc"
  cat > "$RUN/containerd.toml" <<EOF
version = 2
root = "$N/containerd/root"
state = "$N/containerd/state"
oom_score = 0
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$N/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  enable_selinux = false
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails
  # "can't get final child's PID from pipe: EOF"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "$N/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/net.d"
    max_conf_num = 1
EOF
  cat > "$RUN/net.d/10-ship.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "ship",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$N/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat > "$RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: 16250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 16248
cgroupDriver: cgroupfs
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $DIR/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $DIR/pki/kubelet-serving.crt
tlsPrivateKeyFile: $DIR/pki/kubelet-serving.key
clusterDomain: cluster.local
resolvConf: $RUN/resolv.conf
serializeImagePulls: false
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
nodeStatusUpdateFrequency: 2s
volumePluginDir: $N/kubelet/volume-plugins
EOF
  if (( MINOR >= 24 )); then
    # 1.27 removed the kubelet's runtime flags: the runtime's endpoints and the kubelet's own
    # OOM score are set here. 1.31 refuses cgroup v1 unless told (this host runs cgroup v1).
    cat >> "$RUN/kubelet.yaml" <<EOF
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
oomScoreAdj: 0
failCgroupV1: false
EOF
  fi
  # Pods get this resolver, not the host's: there is no cluster DNS, and a name lookup sent to
  # the host's resolver would leave the machine. 127.0.0.1 in a pod is the pod's own loopback.
  printf '# tests/cluster/node.sh: no cluster DNS; lookups stay in the pod\nnameserver 127.0.0.1\n' > "$RUN/resolv.conf"
  cat > "$RUN/proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $DIR/proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:16256
metricsBindAddress: 127.0.0.1:16249
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
oomScoreAdj: 0
EOF
}

prepare_host() {   # record what the node will change, once per DIR
  sysctl -e $SYSCTLS > "$N/sysctl.orig" 2>/dev/null
  local p; for p in $HOSTPATHS; do [[ -e $p ]] || echo "$p"; done > "$N/hostpaths.absent"
  if ! ip -o addr show | grep -qF " inet $NODE_IP/"; then ip addr add "$NODE_IP/32" dev lo && touch "$N/lo-addr"; fi
  # Host -> ClusterIP before kube-proxy programmed it must not follow the default route off the machine.
  ip route replace local "$SVC_CIDR" dev lo
}

node_ready() {
  [[ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

do_start() {
  setup "$1"; local images="${2:?IMAGES dir}" t0=$EPOCHREALTIME i
  [[ -x "$BIN/kubelet" && -x "$BIN/kube-proxy" && -x "$BIN/kube-scheduler" ]] || die "node binaries missing in $BIN (local-k8s.sh install)"
  mkdir -p "$RUN"
  trap 'rc=$?; if (( rc != 0 )); then log "node start failed; logs in $L"; fi' EXIT
  write_configs
  prepare_host
  # flags that newer versions removed: the scheduler's insecure --port (1.24), the kubelet's
  # runtime flags (1.27; write_configs puts them in its config file instead)
  local scheduler_port=() kubelet_runtime=()
  if (( MINOR < 24 )); then
    scheduler_port=(--port 0)
    kubelet_runtime=(--container-runtime remote --container-runtime-endpoint "unix://$SOCK"
      --image-service-endpoint "unix://$SOCK" --oom-score-adj=0)
  fi
  spawn kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/scheduler.kubeconfig" --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 16259 "${scheduler_port[@]}" --leader-elect=false --v=1
  spawn containerd containerd --config "$RUN/containerd.toml"
  waitfor containerd 30 ctr -a "$SOCK" version || { tail -20 "$L/containerd.log" >&2; return 1; }
  for i in "$images"/*.tar; do
    [[ -e "$i" ]] || continue
    ctr -a "$SOCK" -n k8s.io images import "$i" >/dev/null || die "cannot import $i"
  done
  log "containerd up, images imported: $(ctr -a "$SOCK" -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')($(elapsed "$t0")s)"
  spawn kubelet env AWS_EC2_METADATA_DISABLED=true "$BIN/kubelet" --config "$RUN/kubelet.yaml" \
    --kubeconfig "$DIR/kubelet.kubeconfig" "${kubelet_runtime[@]}" \
    --root-dir "$N/kubelet" --cert-dir "$N/kubelet/pki" --hostname-override "$NODE" --node-ip "$NODE_IP" \
    --v=1
  spawn kube-proxy "$BIN/kube-proxy" --config "$RUN/proxy.yaml" --v=1
  waitfor "node $NODE Ready" 120 node_ready || { tail -20 "$L/kubelet.log" >&2; return 1; }
  trap - EXIT
  log "node $NODE Ready at $NODE_IP, Kubernetes v${LOCAL_K8S_VERSION:-1.20.2} ($(elapsed "$t0")s)"
}

stop_pid() {   # stop_pid NAME
  local f="$RUN/$1.pid" p i
  [[ -s "$f" ]] || return 0
  p="$(cat "$f")"
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p"; for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  fi
  rm -f "$f"
}

delete_workloads() {   # ask the kubelet to tear the pods down, for a few seconds at most
  local t0=$EPOCHREALTIME i
  kubectl get nodes >/dev/null 2>&1 || return 0
  kubectl delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1
  for i in $(seq 40); do
    [[ -z "$(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null)" ]] && break
    sleep 0.25
  done
  # What is left (the kubelet tears down a few pods a second on 2 cores, and controllers
  # recreate pods while their namespaces live) is killed below, and the host cleaned up after.
  log "workloads deleted, $(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null | wc -l) containers left to kill ($(elapsed "$t0")s)"
}

kill_containers() {   # with the kubelet stopped: every process in the pods' cgroups, then the shims
  local c pid
  for c in /sys/fs/cgroup/*/kubepods; do
    [[ -d $c ]] && find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | while read -r pid; do kill -KILL "$pid" 2>/dev/null; done
  done
  pgrep -f "containerd-shim.*$N/containerd" | while read -r pid; do kill -KILL "$pid" 2>/dev/null; done
  sleep 0.3
}

restore_host() {
  [[ -f "$RUN/proxy.yaml" ]] && "$BIN/kube-proxy" --cleanup --config "$RUN/proxy.yaml" >/dev/null 2>&1
  local c ipt t ch r m n
  for ipt in iptables ip6tables; do for t in filter nat mangle raw; do   # KUBE-*/CNI-* chains and jumps to them
    ch=$($ipt -t $t -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); [[ -n $ch ]] || continue
    $ipt -t $t -S 2>/dev/null | grep -E -- '-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' | sed 's/^-A/-D/' \
      | while read -r r; do eval "$ipt -t $t $r"; done
    for c in $ch; do $ipt -t $t -F "$c"; done; for c in $ch; do $ipt -t $t -X "$c"; done
  done; done
  ip link del "$BRIDGE" 2>/dev/null
  ip route del local "$SVC_CIDR" dev lo 2>/dev/null
  [[ -f "$N/lo-addr" ]] && ip addr del "$NODE_IP/32" dev lo && rm -f "$N/lo-addr"
  for n in /run/netns/cni-*; do [[ -e $n ]] && { umount "$n" 2>/dev/null; rm -f "$n"; }; done
  grep -oE " ($N|/run/containerd|/var/lib/cni|/run/netns)/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
  [[ -f "$N/hostpaths.absent" ]] && while read -r p; do [[ -n $p ]] && rm -rf "$p"; done < "$N/hostpaths.absent"
  for c in /sys/fs/cgroup/*/kubepods; do [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null; done
  [[ -f "$N/sysctl.orig" ]] && sysctl -q -e -p "$N/sysctl.orig" >/dev/null
  return 0
}

do_stop() {
  setup "$1"
  [[ -d "$RUN" ]] || return 0
  delete_workloads
  local n; for n in kubelet kube-proxy kube-scheduler; do stop_pid "$n"; done
  kill_containers
  stop_pid containerd
  restore_host
  log "node stopped, host restored"
}

case "${1:-}" in
  install) do_install ;;
  start) do_start "${2:-}" "${3:-}" ;;
  stop) do_stop "${2:-}" ;;
  *) echo "usage: $0 install | start DIR IMAGES | stop DIR" >&2; exit 2 ;;
esac
