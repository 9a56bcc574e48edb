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
# The EndpointSlice e2e test routes a pod range into a network namespace of its own (iproute2's `ip`).
if ! command -v ip >/dev/null 2>&1 && [ ! -x /usr/sbin/ip ] && [ ! -x /sbin/ip ]; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends iproute2 >/dev/null \
      || { apt-get update >/dev/null && apt-get install -y --no-install-recommends iproute2 >/dev/null; }
  else
    echo "setup: iproute2 (the ip command) is needed by the tests; install it" >&2; exit 1
  fi
fi
hack/build-k8s.sh
