#!/usr/bin/env bash
# Same-call A/B of two trtllm binaries on the GPU machine: bs1 decode (16/128) and offline
# throughput (128/128, greedy; the new binary also sampled) on random-weight SmolLM2-135M and
# Llama-3-8B shapes (bf16, made by transformers). Build here first:
#   bash scripts/gpu-check.sh build                      # new binary -> .device/bin/trtllm
#   cp <old target>/release/trtllm .device/old/trtllm    # the binary to compare against
#   device: bash scripts/ab-bench.sh                     (carry .device)
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels
RES=${OUT:-/tmp/ab-out}; mkdir -p "$RES"
NEW=.device/bin/trtllm OLD=.device/old/trtllm
S=/tmp/shapes; mkdir -p $S
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
NREQ=${NREQ:-1000}; SEQS=${SEQS:-256}
declare -a rows
j() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(str(round(d.get(k,0),2)) for k in sys.argv[2:]))' "$@" 2>/dev/null || echo "err"; }
for shape in ${SHAPE_LIST:-smollm2 llama3-8b}; do
  [ -f $S/$shape/config.json ] || python3 scripts/make_random_hf.py --shape $shape --out $S/$shape --std 0.02 >>"$RES/make.log" 2>&1
  for rep in 1 2; do
    for b in OLD NEW; do
      bin=${!b}
      $bin bench --model $S/$shape --device cuda --input-len 16 --output-len 128 --json --runs 3 --warmup 1 \
          >"$RES/bs1-$shape-$b.json" 2>>"$RES/err.log"
      rows+=("| $shape | bs1 16/128 decode tok/s (run $rep) | $b | $(j "$RES/bs1-$shape-$b.json" decode_tok_s) |")
    done
  done
  for b in OLD NEW; do
    bin=${!b}
    $bin bench --model $S/$shape --device cuda --mode throughput --num-requests $NREQ --max-num-seqs $SEQS \
        --input-len 128 --output-len 128 --json >"$RES/tp-$shape-$b.json" 2>>"$RES/err.log"
    rows+=("| $shape | $NREQ req 128/128 greedy, $SEQS seqs: out tok/s, tpot s | $b | $(j "$RES/tp-$shape-$b.json" output_tokens_per_s tpot_mean_s) |")
  done
  $NEW bench --model $S/$shape --device cuda --mode throughput --num-requests $NREQ --max-num-seqs $SEQS \
      --input-len 128 --output-len 128 --temperature 0.8 --top-p 0.95 --top-k 50 --repetition-penalty 1.1 \
      --json >"$RES/tps-$shape-NEW.json" 2>>"$RES/err.log"
  rows+=("| $shape | $NREQ req 128/128 sampled (T 0.8, top-p 0.95, top-k 50, rp 1.1): out tok/s, tpot s | NEW | $(j "$RES/tps-$shape-NEW.json" output_tokens_per_s tpot_mean_s) |")
done
tail -5 "$RES/err.log"
echo
echo "ab-bench: $card | new $(cat .device/COMMIT 2>/dev/null) vs old $(cat .device/old/COMMIT 2>/dev/null) | $(date -u +%Y-%m-%dT%H:%MZ)"
echo "| shape | metric | binary | value |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
