#!/usr/bin/env bash
# Serving benchmarks in one GPU-machine call (issue 16's table): random-weight bf16 checkpoints in
# the Llama-3-8B and SmolLM2-135M shapes (made there by transformers), greedy and sampled
# (T 0.8, top-p 0.95, top-k 50, repetition penalty 1.1):
#   offline  `trtllm bench --mode throughput` (default scheduler flags: 256 seqs, 2048 tokens/step)
#            1000 x 128/128 and 512 x 1000/1000 (8B), 1000 x 128/128 (SmolLM2);
#   online   `trtllm serve` with default flags + scripts/load_client.py (return_token_ids: every
#            token timed), concurrency 256 (1000 requests) and 64 (256 requests, for p99 ITL);
#   peer     HF transformers static batch of 256 (scripts/bench_hf_batch.py), same checkpoint.
# Build here: `bash scripts/gpu-check.sh build`; on the device: `bash scripts/bench-serving-gpu.sh`
# (carry .device). Optional A/B: OLD=.device/old/trtllm adds its offline 128/128 rows.
# PARTS="offline online hf" picks parts; SHAPES="llama3-8b smollm2"; HF_SHAPES: shapes with the HF peer.
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels
R=${OUT:-/tmp/bench-serving}; mkdir -p "$R"
T=${TRTLLM:-.device/bin/trtllm}; S=/tmp/shapes; mkdir -p $S
PARTS=${PARTS:-offline online hf}
SAMPLED=(--temperature 0.8 --top-p 0.95 --top-k 50 --repetition-penalty 1.1)
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
declare -a rows
row() { rows+=("$1"); echo "$1"; }
j() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
def f(v): return f"{v:.4g}" if isinstance(v, float) else str(v)
print(" | ".join(f(d[k]) if not isinstance(d.get(k), list) else "/".join(f(x) for x in d[k]) for k in sys.argv[2:]))' "$@" 2>/dev/null || echo "err"; }
offline() {  # label shape n in out [flags...]
  local label=$1 shape=$2 n=$3 in=$4 out=$5; shift 5
  timeout "${STEP_TIMEOUT:-240}" "${BIN:-$T}" bench --mode throughput --model $S/$shape --device cuda --num-requests $n \
      --max-num-seqs 256 --input-len $in --output-len $out --json "$@" >"$R/off-$label.json" 2>"$R/off-$label.err"
  row "| $label | offline | $(j "$R/off-$label.json" output_tokens_per_s tpot_s itl_s ttft_s e2e_s) | $(j "$R/off-$label.json" decode_steps decode_step_s mixed_steps mixed_step_s host_share) |"
}
for shape in ${SHAPES:-llama3-8b smollm2}; do
  [ -f $S/$shape/config.json ] || python3 scripts/make_random_hf.py --shape $shape --out $S/$shape --std 0.02 >>"$R/make.log" 2>&1
  cp tests/fixtures/llama/tokenizer.json tests/fixtures/llama/tokenizer_config.json $S/$shape/ 2>/dev/null
done
for shape in ${SHAPES:-llama3-8b smollm2}; do
  if [[ " $PARTS " == *" offline "* ]]; then
    offline "$shape-128-greedy" $shape 1000 128 128
    offline "$shape-128-sampled" $shape 1000 128 128 "${SAMPLED[@]}"
    if [ -n "${OLD:-}" ]; then BIN=$OLD offline "$shape-128-greedy-OLD" $shape 1000 128 128; fi
    if [ $shape = llama3-8b ]; then
      offline "$shape-1000-greedy" $shape 512 1000 1000 --timeline "$R/timeline-1000.jsonl"
      [ "${LONG_SAMPLED:-0}" = 1 ] && offline "$shape-1000-sampled" $shape 512 1000 1000 "${SAMPLED[@]}"
    fi
  fi
  if [[ " $PARTS " == *" online "* ]] && [ $shape = llama3-8b ]; then
    $T serve --model $S/$shape --device cuda --port 8123 >"$R/serve-$shape.log" 2>&1 &
    sp=$!
    for _ in $(seq 1 180); do curl -sf http://127.0.0.1:8123/health >/dev/null && break; sleep 1; done
    online() {  # label client-args...
      local label=$1; shift
      python3 scripts/load_client.py --url http://127.0.0.1:8123 --vocab 128000 --json "$@" >"$R/on-$label.json" 2>>"$R/client.err"
      row "| $label | online | $(j "$R/on-$label.json" output_tokens_per_s itl_mean_s itl_p50_s itl_p90_s itl_p99_s ttft_p50_s ok errors tokens_marked) |"
    }
    # warm-up traffic (not reported): the first requests after start pay one-time costs
    python3 scripts/load_client.py --url http://127.0.0.1:8123 --vocab 128000 --json --num-requests 256 \
        --concurrency 256 --input-len 128 --output-len 16 >/dev/null 2>>"$R/client.err"
    online "$shape-128-greedy-c256" --num-requests 1000 --concurrency 256 --input-len 128 --output-len 128
    online "$shape-128-sampled-c256" --num-requests 1000 --concurrency 256 --input-len 128 --output-len 128 \
        --temperature 0.8 --top-p 0.95 --top-k 50 --repetition-penalty 1.1
    online "$shape-128-greedy-c64" --num-requests 256 --concurrency 64 --input-len 128 --output-len 128
    kill $sp; wait $sp 2>/dev/null
    grep -m2 "trtllm serve" "$R/serve-$shape.log" | sed 's/^/  /'
  fi
  if [[ " $PARTS " == *" hf "* ]] && [[ " ${HF_SHAPES:-llama3-8b smollm2} " == *" $shape "* ]]; then
    for m in greedy sampled; do
      flag=$([ $m = sampled ] && echo --sampled)
      timeout 300 python3 scripts/bench_hf_batch.py --model $S/$shape --batch 256 $flag >"$R/hf-$shape-$m.json" 2>"$R/hf-$shape-$m.err"
      row "| $shape-128-$m-b256 | HF static batch | $(j "$R/hf-$shape-$m.json" output_tokens_per_s wall_s) |"
    done
  fi
done
echo
echo "bench-serving-gpu: $card | commit $(cat .device/COMMIT 2>/dev/null) | $(date -u +%Y-%m-%dT%H:%MZ)"
echo "offline columns: out tok/s | TPOT mean/p50/p90/p99 s | ITL ... | TTFT ... | E2E ... | decode steps | decode step s | mixed steps | mixed step s | host share"
echo "online columns: out tok/s | ITL mean | p50 | p90 | p99 | TTFT p50 | ok | errors | tokens timed"
printf '%s\n' "${rows[@]}"
