#!/usr/bin/env bash
# The test command (README). CPU only; GPU tests skip themselves with a message when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked -- --test-threads=2
# The tensor-parallel checks of gpu_tp (tp 2 and 4 vs tp 1 on every fixture) on the CPU reference
# group, so the test itself is exercised without GPUs.
TRTLLM_TP_TEST_DEVICE=cpu cargo test -p trtllm-tests --locked --test gpu_tp -- --test-threads=2
