#!/usr/bin/env bash
# The test command (README). CPU only; GPU tests skip themselves with a message when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked -- --test-threads=2
