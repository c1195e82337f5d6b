#!/usr/bin/env bash
# demo.sh - Ship's main job on a fresh machine, end to end:
#   a real local control plane (etcd + kube-apiserver + kube-controller-manager v1.20.2, and a
#   kubelet stand-in that makes Pods Ready), a real git repository served by `git daemon`, a small
#   sample app in two environments, shipd, and the story:
#     Act 1  push to main            -> deployed, tested, Succeeded
#     Act 2  push a breaking commit  -> tests fail, rolled back to the last good release
#     Act 3  push the fix            -> rolls forward, Succeeded
#     Act 4  promote to production   -> `kubectl ship promote --wait` fast-forwards production
#   with `kubectl get shipreleases` after each act. It cleans up after itself.
#
#   deploy/demo.sh            # plays the story; on a terminal, waits for Enter before cleaning up
#   deploy/demo.sh --keep     # leaves everything running and prints how to use and stop it
#
# Installs what it needs and says so (see tests/cluster/local-k8s.sh: Debian packages, and the
# control plane built once from Debian's source package, ~8 min, cached in ~/.cache/ship/).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
KEEP=0; [[ "${1:-}" == "--keep" ]] && KEEP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
BIN="$CARGO_TARGET_DIR/debug"
if [[ -t 1 ]]; then say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }; else say() { printf '\n== %s\n' "$*"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "Building shipd, kubectl-ship and the stand-ins (kubelet, app)"
# The whole workspace, as tests/run.sh builds it: the same features, so nothing builds twice.
cargo build --quiet --locked --workspace --bins
export PATH="$BIN:$PATH"   # kubectl finds the kubectl-ship plugin here

say "Starting a real control plane on 127.0.0.1 (the first run builds it: ~8 min)"
DIR="$(SHIP_STANDIN="$BIN/kubelet-standin" tests/cluster/up.sh)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  tests/cluster/down.sh "$DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# shellcheck disable=SC1091
source "$DIR/env"
mkdir -p "$DIR/logs"

say "Installing Ship's CRDs (shipd never installs them by itself)"
kubectl apply --server-side -f deploy/crds/ >/dev/null
kubectl wait --for condition=established --timeout=30s crd/shipreleases.ship.dev crd/shippromotions.ship.dev >/dev/null
kubectl create namespace ship >/dev/null

APP_PORT="$(free_port)"
"$BIN/app-standin" --addr "127.0.0.1:$APP_PORT" >"$DIR/logs/app.log" 2>&1 &
PIDS+=($!)

say "A git repository with a small shop in two environments, served by git daemon"
GIT="$DIR/git"; mkdir -p "$GIT/work"
git init -q --bare -b main "$GIT/shop.git"
git -C "$GIT/work" init -q -b main
git -C "$GIT/work" config user.email demo@ship.dev; git -C "$GIT/work" config user.name "Demo Dev"
git -C "$GIT/work" remote add origin "$GIT/shop.git"
page() {  # page ENV BODY: the environment's manifests, the page's text in a ConfigMap
  mkdir -p "$GIT/work/deploy/$1"
  cat >"$GIT/work/deploy/$1/shop.yaml" <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: shop-$1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {body: "$2"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "shop/web:$1"}]}
YAML
}
commit() { git -C "$GIT/work" add -A && git -C "$GIT/work" commit -q -m "$1" && git -C "$GIT/work" rev-parse HEAD; }
cat >"$GIT/work/ship.yaml" <<YAML
environments:
  main: {namespace: shop-main}
  production: {namespace: shop-production}
health: {timeout: 60s}
tests:
  - name: home-page
    http:
      url: "http://127.0.0.1:$APP_PORT/{namespace}/health"
      expect: {status: 200, bodyContains: "Welcome"}
YAML
page main "Welcome to the shop"
page production "Welcome to the shop"
commit "The shop, in two environments" >/dev/null
git -C "$GIT/work" push -q origin main main:production
GIT_PORT="$(free_port)"
git daemon --reuseaddr --base-path="$GIT" --export-all --enable=receive-pack \
  --listen=127.0.0.1 --port="$GIT_PORT" "$GIT" >"$DIR/logs/git-daemon.log" 2>&1 &
PIDS+=($!)
sleep 0.5
echo "repository: git://127.0.0.1:$GIT_PORT/shop.git (branches main and production)"

say "Starting shipd (logs: $DIR/logs/shipd.log)"
PROBE_PORT="$(free_port)"
"$BIN/shipd" --namespace ship --secret-namespace ship --repo-url "git://127.0.0.1:$GIT_PORT/shop.git" \
  --data-dir "$DIR/shipd" --poll-interval 1s --promotion-interval 1s --probe-addr "127.0.0.1:$PROBE_PORT" --log-format json \
  >"$DIR/logs/shipd.log" 2>&1 &
PIDS+=($!)

# wait_release ENV COMMIT PHASE: until the release of COMMIT to ENV settles in PHASE.
wait_release() {
  local name="$1-${2:0:10}" phase=""
  for _ in $(seq 1 300); do
    phase="$(kubectl get shiprelease -n ship "$name" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
    [[ "$phase" == "$3" ]] && return 0
    sleep 0.2
  done
  echo "ERROR: $name is '$phase', expected $3; shipd's log: $DIR/logs/shipd.log" >&2
  tail -20 "$DIR/logs/shipd.log" >&2
  exit 1
}
show() { echo; echo "\$ kubectl get shipreleases -n ship"; kubectl get shipreleases -n ship --sort-by=.metadata.creationTimestamp; }

FIRST="$(git -C "$GIT/work" rev-parse HEAD)"
wait_release main "$FIRST" Succeeded
wait_release production "$FIRST" Succeeded
echo "both environments run the first commit; the home-page test passes in each"

say "Act 1: push to main: deployed, tested, Succeeded"
page main "Welcome to the shop: prices now in euros"
GOOD="$(commit "Show prices in euros")"
git -C "$GIT/work" push -q origin main
wait_release main "$GOOD" Succeeded
show

say "Act 2: push a breaking commit: the home-page test fails, main rolls back"
page main "Internal Server Error"
BAD="$(commit "Refactor the page template")"
git -C "$GIT/work" push -q origin main
wait_release main "$BAD" RolledBack
show
echo; echo "\$ kubectl ship logs main-${BAD:0:10} -n ship"
kubectl ship logs "main-${BAD:0:10}" -n ship || true

say "Act 3: push the fix: main rolls forward"
page main "Welcome to the shop: prices now in euros, template fixed"
FIX="$(commit "Fix the page template")"
git -C "$GIT/work" push -q origin main
wait_release main "$FIX" Succeeded
show

say "Act 4: promote to production (the weekly forced release, asked for now)"
echo "\$ kubectl ship promote -n ship --wait"
kubectl ship promote -n ship --wait
wait_release production "$FIX" Succeeded
kubectl wait -n ship shippromotion/production --for=jsonpath='{.status.behind.commits}'=0 --timeout=30s >/dev/null
show
echo; echo "\$ kubectl ship status -n ship"
kubectl ship status -n ship
echo; echo "\$ kubectl get shippromotions -n ship"
kubectl get shippromotions -n ship

say "The story is over: main and production both run $(git -C "$GIT/work" rev-parse --short HEAD)"
if (( KEEP )); then
  trap - EXIT
  say "Left running. Use it with:  source $DIR/env; export PATH=$BIN:\$PATH"
  echo "Stop it with:  kill ${PIDS[*]}; tests/cluster/down.sh $DIR"
elif [[ -t 0 && -z "${CI:-}" ]]; then
  say "Everything is up: in another shell, 'source $DIR/env' and try kubectl. Press Enter to stop."
  read -r _
fi
