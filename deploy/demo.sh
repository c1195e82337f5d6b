#!/usr/bin/env bash
# demo.sh - Ship's main job on a fresh machine: a real local control plane (etcd +
# kube-apiserver + kube-controller-manager v1.20.2 and a kubelet stand-in), Ship's CRD, and
# shipd running against it. The story grows with the release engine; today it shows a
# ShipRelease admitted by shipd and listed by `kubectl get shipreleases`.
#
#   deploy/demo.sh            # on a terminal: keeps everything up until you press Enter
#   deploy/demo.sh --keep     # leave it running; it prints how to use and stop it
#   CI=true deploy/demo.sh    # no terminal: plays the story, then cleans up
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
KEEP=0; [[ "${1:-}" == "--keep" ]] && KEEP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
if [[ -t 1 ]]; then say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }; else say() { printf '\n== %s\n' "$*"; }; fi

say "Building shipd and the kubelet stand-in"
cargo build --quiet --locked -p shipd -p ship-testkit --bins

say "Starting a real control plane on 127.0.0.1 (first run builds it: ~8 min)"
DIR="$(SHIP_STANDIN="$CARGO_TARGET_DIR/debug/kubelet-standin" tests/cluster/up.sh)"
SHIPD_PID=""
cleanup() {
  [[ -n "$SHIPD_PID" ]] && kill -TERM "$SHIPD_PID" 2>/dev/null && wait "$SHIPD_PID" 2>/dev/null || true
  tests/cluster/down.sh "$DIR"
}
trap cleanup EXIT
# shellcheck disable=SC1091
source "$DIR/env"
kubectl version 2>/dev/null | grep -i '^server version' || true

say "Installing Ship's CRD (shipd never installs it by itself)"
kubectl apply --server-side -f deploy/crds/
kubectl wait --for condition=established --timeout=30s crd/shipreleases.ship.dev

say "Starting shipd (logs: $DIR/logs/shipd.log)"
"$CARGO_TARGET_DIR/debug/shipd" --probe-addr 127.0.0.1:0 --log-format plain >"$DIR/logs/shipd.log" 2>&1 &
SHIPD_PID=$!
PROBE=""
for _ in $(seq 1 100); do
  PROBE="$(sed -n 's/.*probe server listening addr=\([0-9.:]*\).*/\1/p' "$DIR/logs/shipd.log" | head -1)"
  [[ -n "$PROBE" ]] && curl -sf "http://$PROBE/readyz" >/dev/null && break
  sleep 0.2
done
echo "shipd /readyz: $(curl -s "http://$PROBE/readyz")"

say "Creating a ShipRelease for environment main"
kubectl create namespace ship-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
cat <<YAML | kubectl apply -n ship-demo -f -
apiVersion: ship.dev/v1alpha1
kind: ShipRelease
metadata: {name: main-4b825dc}
spec:
  environment: main
  commit: 4b825dc642cb6eb9a060e54bf8d69288fbee4904
  branch: main
  reason: Manual
YAML
for _ in $(seq 1 50); do
  [[ -n "$(kubectl get shiprelease main-4b825dc -n ship-demo -o jsonpath='{.status.phase}')" ]] && break
  sleep 0.2
done

say "kubectl get shipreleases -A"
kubectl get shipreleases -A

if (( KEEP )); then
  trap - EXIT
  say "Left running. Use it with:  source $DIR/env"
  echo "Stop it with:  kill $SHIPD_PID; tests/cluster/down.sh $DIR"
elif [[ -t 0 ]]; then
  say "Everything is up: in another shell, 'source $DIR/env' and try kubectl. Press Enter to stop."
  read -r _
fi
