#!/usr/bin/env bash
# Install ECLOR with its test extra into .venv and run the whole test suite.
# This is the README's second set-up command; .ci/run calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
# An independent CoAP implementation for interop tests (optional: the tests
# that need it skip when it is missing and apt is not available).
if ! command -v coap-client-notls >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcoap3-bin) >/dev/null 2>&1 || echo "note: libcoap3-bin not installed; libcoap interop tests will skip"
fi
exec .venv/bin/python -m pytest "$@"
