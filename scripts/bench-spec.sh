#!/usr/bin/env bash
# CPU speculative-decoding benchmark: SmolLM2-135M-Instruct (a real HF directory) summarizing
# data/summarize at batch 1, greedy: plain decode vs prompt lookup (n-gram), same binary, one
# call. Prints decode tok/s of both, the speedup, acceptance, tokens per step, and whether the
# summaries are identical (they must be).
#   bash scripts/bench-spec.sh [MODEL_DIR]      (default: models/smollm2-hf)
# env: TRTLLM_BIN (default target/release/trtllm), K (most draft tokens, default 8), LOOKUP_MIN /
#      LOOKUP_MAX (n-gram window, default 1 / 4), MAX_DOCS (default all 24), MAX_OUT (default 96),
#      DTYPE (default auto), OUT (default /tmp/bench-spec).
# On a shared machine run it under `flock /tmp/cargo.lock` (no compile in parallel).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/smollm2-hf}
BIN=${TRTLLM_BIN:-target/release/trtllm}
K=${K:-8}; LMIN=${LOOKUP_MIN:-1}; LMAX=${LOOKUP_MAX:-4}
OUT=${OUT:-/tmp/bench-spec}; mkdir -p "$OUT"
common=(summarize --model "$MODEL" --device cpu --dtype "${DTYPE:-auto}" --batch-size 1
  --max-output-len "${MAX_OUT:-96}" --dataset data/summarize)
[ -n "${MAX_DOCS:-}" ] && common+=(--max-docs "$MAX_DOCS")
# Plain and speculative runs alternate (REPEAT pairs, default 3): this VM's bandwidth moves with
# the host's other tenants, so each reported rate is the median of its runs.
for r in $(seq 1 "${REPEAT:-3}"); do
  "$BIN" "${common[@]}" --output-file "$OUT/plain$r.json" >"$OUT/plain$r.txt" 2>"$OUT/plain$r.err"
  "$BIN" "${common[@]}" --output-file "$OUT/spec$r.json" --speculative-method ngram \
    --num-speculative-tokens "$K" --prompt-lookup-min "$LMIN" --prompt-lookup-max "$LMAX" >"$OUT/spec$r.txt" 2>"$OUT/spec$r.err"
done
same=yes
for r in $(seq 1 "${REPEAT:-3}"); do
  cmp -s "$OUT/plain1.json" "$OUT/plain$r.json" && cmp -s "$OUT/plain1.json" "$OUT/spec$r.json" || same=no
done
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u +%F); commit $(git rev-parse --short HEAD)"
echo "plain:       $(grep '^generation' "$OUT/plain1.txt")"
echo "prompt lookup K=$K n=$LMIN..$LMAX: $(grep '^generation' "$OUT/spec1.txt")"
echo "             $(grep '^speculative' "$OUT/spec1.txt")"
python3 - "$OUT" "${REPEAT:-3}" "$same" <<'PY'
import re, statistics, sys
out, n, same = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rate = lambda f: float(re.search(r"decode .* tokens, ([0-9.]+) tok/s\)", open(f).read()).group(1))
p = [rate(f"{out}/plain{r}.txt") for r in range(1, n + 1)]
s = [rate(f"{out}/spec{r}.txt") for r in range(1, n + 1)]
pm, sm = statistics.median(p), statistics.median(s)
print(f"decode tok/s plain {p} -> median {pm:.1f}; speculative {s} -> median {sm:.1f}")
print(f"speedup {sm / pm:.2f}x (per pair: {', '.join(f'{b / a:.2f}' for a, b in zip(p, s))}); identical summaries: {same}")
PY
[ "$same" = yes ]
