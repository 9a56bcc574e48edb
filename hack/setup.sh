#!/usr/bin/env bash
# Make this checkout runnable: a virtualenv with the package and its test/dev extras, and the real
# Kubernetes binaries built from Go modules (cached; a second run does nothing). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"' \
  || { echo "setup: Python >= 3.11 is required (found $("$PY" --version 2>&1))" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test,dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi
hack/build-k8s.sh
