#!/usr/bin/env bash
# Offline serving throughput on the GPU machine: `trtllm bench --mode throughput`, 128/128, on
# random-weight bf16 checkpoints in the SmolLM2-135M and Llama-3-8B shapes (made there by
# transformers, scripts/make_random_hf.py). The GPU machine has no Rust toolchain: stage first,
# here: `mkdir -p .device/serve && strip -o .device/serve/trtllm target/release/trtllm`; then run
# this through the device tool with `carry: [".device"]`. RUNS="shape:requests:max-num-seqs,...".
set -uo pipefail
cd "$(dirname "$0")/.."
T=${TRTLLM:-.device/serve/trtllm}; S=/tmp/shapes; R=${OUT:-/tmp}
export TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
IFS=, read -ra specs <<<"${RUNS:-smollm2:256:256,llama3-8b:256:256,llama3-8b:1000:256}"
for spec in "${specs[@]}"; do
  IFS=: read -r shape n seqs <<<"$spec"
  if [ ! -f "$S/$shape/config.json" ]; then
    python3 scripts/make_random_hf.py --shape "$shape" --out "$S/$shape" --std 0.02 >"$R/make-$shape.log" 2>&1 \
      || { echo "making $shape failed"; tail -5 "$R/make-$shape.log"; continue; }
  fi
  timeout "${STEP_TIMEOUT:-300}" "$T" bench --mode throughput --model "$S/$shape" --device cuda --num-requests "$n" \
    --input-len 128 --output-len 128 --max-num-seqs "$seqs" --max-num-tokens "${MAX_NUM_TOKENS:-8192}" --json \
    >"$R/serve-$shape-$n.json" 2>"$R/serve-$shape-$n.err"
  echo "rc=$? shape=$shape requests=$n max-num-seqs=$seqs"
  cat "$R/serve-$shape-$n.json"
  tail -3 "$R/serve-$shape-$n.err"
done
