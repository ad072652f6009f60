#!/usr/bin/env bash
# Server tests: `trtllm serve` on the tiny Llama fixture (CPU, 127.0.0.1, ephemeral ports),
# exercised with the official `openai` Python client, curl and requests (tests/server/).
# Creates a small venv (openai + pytest + requests) under target/, builds the binary if needed.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${TRTLLM_BIN:-target/debug/trtllm}"
if [[ ! -x "$BIN" || -n "${TRTLLM_REBUILD:-}" ]]; then
  cargo build --locked --bin trtllm
fi
VENV="${TRTLLM_SERVER_VENV:-target/server-venv}"
if [[ ! -x "$VENV/bin/pytest" ]] || ! "$VENV/bin/python" -c "import openai, requests, jsonschema" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openai>=1.40,<3" "pytest>=7,<9" "requests>=2.28,<3" "jsonschema>=4,<5"
fi
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }

export TRTLLM_BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
set +e
timeout 900 "$VENV/bin/pytest" tests/server -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest: 0 all passed, 1 failures, 2 interrupted, 3 internal error, 4 usage error, 5 no tests.
case $rc in
  0) echo "server tests: ok" ;;
  5) echo "server tests: pytest collected no tests" >&2; exit 1 ;;
  124) echo "server tests: timed out" >&2; exit 1 ;;
  *) echo "server tests: failed (pytest exit $rc)" >&2; exit "$rc" ;;
esac
