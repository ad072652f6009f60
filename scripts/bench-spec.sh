#!/usr/bin/env bash
# CPU speculative-decoding benchmark: SmolLM2-135M-Instruct (a real HF directory) summarizing
# data/summarize at batch 1, greedy: plain decode vs prompt lookup (n-gram), same binary, one
# call. Prints decode tok/s of both, the speedup, acceptance, tokens per step, and whether the
# summaries are identical (they must be).
#   bash scripts/bench-spec.sh [MODEL_DIR]      (default: models/smollm2-hf)
# env: TRTLLM_BIN (default target/release/trtllm), K (draft tokens, default 4), LOOKUP_MIN /
#      LOOKUP_MAX (n-gram window, default 2 / 4), MAX_DOCS (default all 24), MAX_OUT (default 96),
#      DTYPE (default auto), OUT (default /tmp/bench-spec).
# On a shared machine run it under `flock /tmp/cargo.lock` (no compile in parallel).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/smollm2-hf}
BIN=${TRTLLM_BIN:-target/release/trtllm}
K=${K:-4}; LMIN=${LOOKUP_MIN:-2}; LMAX=${LOOKUP_MAX:-4}
OUT=${OUT:-/tmp/bench-spec}; mkdir -p "$OUT"
common=(summarize --model "$MODEL" --device cpu --dtype "${DTYPE:-auto}" --batch-size 1
  --max-output-len "${MAX_OUT:-96}" --dataset data/summarize)
[ -n "${MAX_DOCS:-}" ] && common+=(--max-docs "$MAX_DOCS")
"$BIN" "${common[@]}" --output-file "$OUT/plain.json" >"$OUT/plain.txt" 2>"$OUT/plain.err"
"$BIN" "${common[@]}" --output-file "$OUT/spec.json" --speculative-method ngram \
  --num-speculative-tokens "$K" --prompt-lookup-min "$LMIN" --prompt-lookup-max "$LMAX" >"$OUT/spec.txt" 2>"$OUT/spec.err"
rate() { sed -n 's/.*decode .* tokens, \([0-9.]*\) tok\/s).*/\1/p' "$1"; }
plain=$(rate "$OUT/plain.txt"); spec=$(rate "$OUT/spec.txt")
same=no; cmp -s "$OUT/plain.json" "$OUT/spec.json" && same=yes
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u +%F); commit $(git rev-parse --short HEAD)"
echo "plain:       $(grep '^generation' "$OUT/plain.txt")"
echo "prompt lookup K=$K n=$LMIN..$LMAX: $(grep '^generation' "$OUT/spec.txt")"
echo "             $(grep '^speculative' "$OUT/spec.txt")"
python3 - "$plain" "$spec" "$same" <<'PY'
import sys
p, s, same = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print(f"decode tok/s plain {p:.1f}, speculative {s:.1f}: speedup {s / p:.2f}x; identical summaries: {same}")
PY
[ "$same" = yes ]
