#!/usr/bin/env bash
# FP8 and INT4 against bf16 on the GPU machine, one call: a random Llama-3-8B-shape bf16
# checkpoint (by transformers), quantized by `trtllm convert --quantize fp8` (compressed-tensors
# per-channel FP8, dynamic per-token activations) and `--quantize int4-awq-rtn` (AWQ layout,
# group 128), then batch-1 decode, TTFT at 512 / 2048, offline throughput 1000 x 128/128 (bf16,
# FP8, FP8 + FP8 KV cache) and 512 x 1000/1000 (bf16, FP8), one table. HF transformers needs the compressed-tensors package to run
# this checkpoint (not installed on the device): the comparison is our own bf16, same call.
# Build first here: `bash scripts/gpu-check.sh build` (stages .device/).
#   device: bash scripts/bench-fp8.sh     (carry .device)   env: SHAPE, PARTS="bs1 ttft tput long",
#   WEIGHTS="bf16 fp8 int4", TTFT_LENS="512 2048"
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels
R=${OUT:-/tmp/bench-fp8}; mkdir -p "$R"
T=.device/bin/trtllm; S=/tmp/shapes; mkdir -p $S
SHAPE=${SHAPE:-llama3-8b}; PARTS=${PARTS:-bs1 ttft tput long}; WEIGHTS=${WEIGHTS:-bf16 fp8 int4}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
B=$S/$SHAPE; F=$S/$SHAPE-fp8; I=$S/$SHAPE-int4
[ -f $B/config.json ] || python3 scripts/make_random_hf.py --shape $SHAPE --out $B --std 0.02 >>"$R/make.log" 2>&1
cp tests/fixtures/llama/tokenizer.json tests/fixtures/llama/tokenizer_config.json $B/ 2>/dev/null
for w in $WEIGHTS; do
  case $w in fp8) D=$F q=fp8;; int4) D=$I q=int4-awq-rtn;; *) continue;; esac
  t0=$SECONDS
  [ -f $D/config.json ] || $T convert --model-dir $B --output-dir $D --quantize $q >>"$R/convert.log" 2>&1 || tail -5 "$R/convert.log"
  echo "convert --quantize $q: $((SECONDS - t0)) s, $(du -sh $D | cut -f1) (bf16 $(du -sh $B | cut -f1))"
done
j() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
print(" | ".join(f"{d.get(k,0):.4g}" if isinstance(d.get(k,0),(int,float)) else str(d.get(k)) for k in sys.argv[2:]))' "$@" 2>/dev/null || echo "err"; }
declare -a rows
row() { rows+=("$1"); echo "$1"; }
for w in $WEIGHTS; do
  M=$B; [ $w = fp8 ] && M=$F; [ $w = int4 ] && M=$I
  if [[ " $PARTS " == *" bs1 "* ]]; then
    $T bench --model $M --device cuda --input-len 16 --output-len 128 --json --runs 3 --warmup 1 >"$R/bs1-$w.json" 2>"$R/bs1-$w.err"
    row "| $w | bs1 16/128 | decode tok/s, ms/tok, GB/s | $(j "$R/bs1-$w.json" decode_tok_s tpot_ms achieved_gbps) |"
  fi
  if [[ " $PARTS " == *" ttft "* ]]; then
    for n in ${TTFT_LENS:-512 2048}; do
      $T bench --model $M --device cuda --input-len $n --output-len 1 --json --runs 3 --warmup 1 >"$R/ttft$n-$w.json" 2>>"$R/bs1-$w.err"
      row "| $w | TTFT $n | ms | $(j "$R/ttft$n-$w.json" ttft_ms) |"
    done
  fi
  if [[ " $PARTS " == *" tput "* && $w != int4 ]]; then
    timeout 300 $T bench --mode throughput --model $M --device cuda --num-requests 1000 --max-num-seqs 256 \
        --input-len 128 --output-len 128 --json >"$R/tput-$w.json" 2>"$R/tput-$w.err" || tail -3 "$R/tput-$w.err"
    row "| $w | 1000 x 128/128 offline | out tok/s, TPOT s, decode step s | $(j "$R/tput-$w.json" output_tokens_per_s tpot_s decode_step_s) |"
    if [ $w = fp8 ]; then
      timeout 300 $T bench --mode throughput --model $M --device cuda --num-requests 1000 --max-num-seqs 256 \
          --input-len 128 --output-len 128 --kv-cache-dtype fp8 --json >"$R/tput-$w-kv8.json" 2>"$R/tput-$w-kv8.err" || tail -3 "$R/tput-$w-kv8.err"
      row "| $w + FP8 KV | 1000 x 128/128 offline | out tok/s, TPOT s, decode step s | $(j "$R/tput-$w-kv8.json" output_tokens_per_s tpot_s decode_step_s) |"
    fi
  fi
  if [[ " $PARTS " == *" long "* && $w != int4 ]]; then
    timeout 300 $T bench --mode throughput --model $M --device cuda --num-requests 512 --max-num-seqs 256 \
        --input-len 1000 --output-len 1000 --json >"$R/long-$w.json" 2>"$R/long-$w.err" || tail -3 "$R/long-$w.err"
    row "| $w | 512 x 1000/1000 offline | out tok/s, TPOT s, decode step s | $(j "$R/long-$w.json" output_tokens_per_s tpot_s decode_step_s) |"
  fi
done
echo
echo "bench-fp8: $card | commit $(cat .device/COMMIT 2>/dev/null) | $(date -u +%Y-%m-%dT%H:%MZ) | $SHAPE random weights (std 0.02)"
printf '%s\n' "${rows[@]}"
