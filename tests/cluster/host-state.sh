#!/usr/bin/env bash
# host-state.sh - prints what the node (tests/cluster/node.sh) may change on this host, in a stable
# form, so that tests/run.sh can check the host is exactly as it was before the suite:
# sysctls, iptables and ip6tables rules, network links, addresses and routes, mounts, netns,
# the fixed paths the kubelet and containerd use, and kubepods cgroups.
set -uo pipefail
echo "## sysctl"
sysctl -e vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys \
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet \
  net.bridge.bridge-nf-call-iptables 2>/dev/null
for ipt in iptables ip6tables; do
  for t in filter nat mangle raw; do echo "## $ipt -t $t"; $ipt -t "$t" -S 2>/dev/null; done
done
echo "## links"; ip -o link show | awk '{print $2}' | sort
echo "## addresses"; ip -o addr show | awk '{print $2, $3, $4}' | sort
echo "## routes"; ip route show table all 2>/dev/null | grep -v '^fe80\|^local fe80\|^multicast' | sort
echo "## mounts"; awk '{print $2, $3}' /proc/mounts | grep -vE '^/proc/[0-9]' | sort
echo "## netns"; ls /run/netns 2>/dev/null
echo "## paths"
for p in /var/log/pods /var/log/containers /var/lib/cni /run/netns /run/containerd /usr/libexec/kubernetes; do
  [[ -e $p ]] && echo "present $p" || echo "absent $p"
done
echo "## cgroups"; ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null
exit 0   # a snapshot, not a check: tests/run.sh compares two of them
