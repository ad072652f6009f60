#!/usr/bin/env bash
# The whole GPU suite in two halves.
#   bash scripts/gpu-check.sh build   # here (Rust toolchain): build the GPU test binaries + trtllm into .device/
#   bash scripts/gpu-check.sh run     # on the GPU machine (device tool, carry .device): run everything, print a table
# The GPU machine has no Rust toolchain and no network: everything it runs is staged by `build`.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
D=.device

if [ "$mode" = build ]; then
  mkdir -p $D/bin
  export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
  cargo build --release --bin trtllm
  cp target/release/trtllm $D/bin/
  { cargo test --release -p trtllm-tests --no-run --message-format=json \
      --test gpu_ops --test gpu_attention --test gpu_flash --test gpu_models --test gpu_graphs --test gpu_spec --test gpu_shapes --test gpu_quant_models --test gpu_zoo_ops --test gpu_moe --test gpu_gguf_models --test gpu_kv8 2>/dev/null
    cargo test --release -p trtllm-kernels --no-run --message-format=json --test gpu_sampling --test gpu_quant --test gpu_token_mask --test gpu_gguf 2>/dev/null; } \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]==["test"]:
        print(m["target"]["name"], m["executable"])' \
    | while read -r name exe; do cp "$exe" "$D/bin/$name"; done
  # the GEMV tuning sweep (run it on the device: .device/bin/gemv_sweep)
  cargo build --release -p trtllm-kernels --example gemv_sweep
  cp target/release/examples/gemv_sweep $D/bin/
  git rev-parse --short HEAD > $D/COMMIT
  ls -la $D/bin
  exit 0
fi

[ "$mode" = run ] || { echo "usage: $0 build|run" >&2; exit 2; }
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
export TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
commit=$(cat $D/COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
declare -a rows
run_suite() {  # name, command...
  local name=$1; shift
  local log="$OUT/$name.log" t0=$SECONDS rc=0
  "$@" >"$log" 2>&1 || rc=$?
  local summary; summary=$(grep -E '^test result:' "$log" | tail -1 | sed 's/test result: //; s/; finished.*//')
  rows+=("$(printf '%-26s %-6s %4ss  %s' "$name" "$([ $rc = 0 ] && echo PASS || echo FAIL)" $((SECONDS - t0)) "${summary:-rc=$rc}")")
  [ $rc = 0 ] || tail -30 "$log"
}
# tests/ reads fixtures relative to the crate dir baked in at build time: run from the same path layout.
export CARGO_MANIFEST_DIR="$PWD/tests"
run_suite gpu_ops $D/bin/gpu_ops --test-threads=1
run_suite gpu_attention $D/bin/gpu_attention --test-threads=1 --nocapture
run_suite gpu_flash $D/bin/gpu_flash --test-threads=1 --nocapture
run_suite gpu_models $D/bin/gpu_models --test-threads=1 --nocapture
run_suite gpu_graphs $D/bin/gpu_graphs --test-threads=1 --nocapture
run_suite gpu_spec $D/bin/gpu_spec --test-threads=1 --nocapture
run_suite gpu_sampling $D/bin/gpu_sampling --test-threads=1 --nocapture
run_suite gpu_quant $D/bin/gpu_quant --test-threads=1 --nocapture
run_suite gpu_quant_models $D/bin/gpu_quant_models --test-threads=1 --nocapture
run_suite gpu_token_mask $D/bin/gpu_token_mask --test-threads=1 --nocapture
run_suite gpu_zoo_ops $D/bin/gpu_zoo_ops --test-threads=1 --nocapture
run_suite gpu_moe $D/bin/gpu_moe --test-threads=1 --nocapture
run_suite gpu_gguf $D/bin/gpu_gguf --test-threads=1 --nocapture
run_suite gpu_gguf_models $D/bin/gpu_gguf_models --test-threads=1 --nocapture
run_suite gpu_kv8 $D/bin/gpu_kv8 --test-threads=1 --nocapture
run_suite memcheck_kv8 compute-sanitizer --tool memcheck --error-exitcode 1 $D/bin/gpu_kv8 --test-threads=1 qkv_attention_over
run_suite memcheck compute-sanitizer --tool memcheck --error-exitcode 1 $D/bin/gpu_ops --test-threads=1
run_suite memcheck_attention compute-sanitizer --tool memcheck --error-exitcode 1 $D/bin/gpu_attention --test-threads=1
run_suite memcheck_quant compute-sanitizer --tool memcheck --error-exitcode 1 $D/bin/gpu_quant_models --test-threads=1 \
    _matmul_matches_cpu
run_suite memcheck_moe compute-sanitizer --tool memcheck --error-exitcode 1 $D/bin/gpu_moe --test-threads=1
run_suite memcheck_flash compute-sanitizer --tool memcheck --error-exitcode 1 $D/bin/gpu_flash --test-threads=1
run_suite memcheck_sampling compute-sanitizer --tool memcheck --error-exitcode 1 $D/bin/gpu_sampling --test-threads=1 \
    same_seed_and_counter
if [ "${SHAPES:-1}" = 1 ]; then
  S=/tmp/shapes; mkdir -p $S
  ids=$(python3 -c 'import random; random.seed(0); print(",".join(str(random.randrange(3, 30000)) for _ in range(16)))')
  for shape in ${SHAPE_LIST:-smollm2 llama3-8b}; do
    python3 scripts/make_random_hf.py --shape $shape --out $S/$shape --std 0.05 >>"$OUT/shapes.log" 2>&1
    python3 scripts/hf_reference.py --model $S/$shape --input-ids "$ids" --dtype float32 --greedy 16 --device cuda \
        --output $S/$shape/reference_f32.safetensors >>"$OUT/shapes.log" 2>&1
    python3 scripts/hf_reference.py --model $S/$shape --input-ids "$ids" --dtype bfloat16 --greedy 16 --device cuda \
        --output $S/$shape/reference_bf16.safetensors >>"$OUT/shapes.log" 2>&1
  done
  TRTLLM_SHAPES_DIR=$S run_suite gpu_shapes $D/bin/gpu_shapes --test-threads=1 --nocapture
  grep '^SHAPE' "$OUT/gpu_shapes.log" || true
fi
echo
echo "GPU check: $card | commit $commit | $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%s\n' "${rows[@]}"
