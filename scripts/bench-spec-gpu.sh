#!/usr/bin/env bash
# GPU speculative-decoding mechanism benchmark (issue 21): Llama-3-8B shape with random weights
# (scripts/make_random_hf.py, bf16), draft = the target itself (a self-draft: acceptance 100%
# under greedy), K = 2, 4, 8 vs plain decode at batch 1, 16-token prompt, 128 new tokens, one
# call on one card. Per row: decode tok/s, the decode rate without the draft model's time (the
# verification-overhead bound the issue's >= 2.5x at K = 4 is about), acceptance, tokens/step.
# Build first here: `bash scripts/gpu-check.sh build` (stages .device/).
#   device: bash scripts/bench-spec-gpu.sh     (carry .device)
# env: SHAPE (default llama3-8b; smollm2 also works), INPUT_LEN (16), OUTPUT_LEN (128), KS ("2 4 8").
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels
T=${TRTLLM_BIN:-.device/bin/trtllm}
OUT=/tmp/bench-spec-gpu; mkdir -p "$OUT"
S=/tmp/shapes; mkdir -p $S
SHAPE=${SHAPE:-llama3-8b}; IN=${INPUT_LEN:-16}; OL=${OUTPUT_LEN:-128}
M=$S/$SHAPE
[ -f $M/config.json ] || python3 scripts/make_random_hf.py --shape $SHAPE --out $M --std 0.02 >"$OUT/make.log" 2>&1
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card; commit $(cat .device/COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown); shape $SHAPE bs1 $IN/$OL"
b=(bench --model $M --device cuda --input-len $IN --output-len $OL --json --runs 3 --warmup 1)
$T "${b[@]}" >"$OUT/plain.json" 2>"$OUT/plain.err" || { tail -5 "$OUT/plain.err"; exit 1; }
for k in ${KS:-2 4 8}; do
  $T "${b[@]}" --speculative-model $M --num-speculative-tokens $k >"$OUT/k$k.json" 2>"$OUT/k$k.err" || tail -5 "$OUT/k$k.err"
done
python3 - "$OUT" ${KS:-2 4 8} <<'PY'
import json, sys
out, ks = sys.argv[1], sys.argv[2:]
plain = json.load(open(f"{out}/plain.json"))
p = plain["decode_tok_s"]
print(f"{'run':<10} {'decode tok/s':>13} {'x plain':>8} {'w/o draft tok/s':>16} {'x plain':>8} {'accept':>7} {'tok/step':>9} {'same text':>9}")
print(f"{'plain':<10} {p:>13.1f} {1:>8.2f} {'':>16} {'':>8} {'':>7} {'':>9} {'':>9}")
for k in ks:
    try:
        j = json.load(open(f"{out}/k{k}.json"))
    except Exception as e:
        print(f"K={k:<8} failed: {e}")
        continue
    s = j["speculative"]
    same = j["token_ids"] == plain["token_ids"]
    print(f"{'K=' + k:<10} {j['decode_tok_s']:>13.1f} {j['decode_tok_s'] / p:>8.2f} {s['decode_tok_s_excl_draft']:>16.1f} "
          f"{s['decode_tok_s_excl_draft'] / p:>8.2f} {s['acceptance_rate']:>7.2f} {s['tokens_per_step']:>9.2f} {str(same):>9}")
PY
