#!/usr/bin/env bash
# Issue 19's fidelity check on real checkpoints: each HF directory -> a Q8_0 GGUF written by
# `trtllm convert --quantize q8_0`, that GGUF dequantized back to an f32 HF directory
# (`trtllm convert --gguf`), then 30 greedy tokens of both (`trtllm run --device cpu`) for each
# prompt: the Q8_0 file run from its blocks (f32 activations by default; TRTLLM_Q8_0_ACT=int8 for
# llama.cpp's int8 activations) against its own dequantized f32
# weights. Prints one row per (model, prompt): identical text or the first difference.
# usage: bash scripts/gguf-fidelity.sh HF_DIR...   (env: TRTLLM=binary, WORK=/tmp/gguf-fidelity)
set -uo pipefail
cd "$(dirname "$0")/.."
T=${TRTLLM:-target/release/trtllm}; W=${WORK:-/tmp/gguf-fidelity}; mkdir -p "$W"
PROMPTS=("Born in north-east France, Soyer trained as a" "The capital of France is"
         "def fibonacci(n):" "Water boils at a temperature of" "Once upon a time, in a small village,")
same=0; total=0
for d in "$@"; do
  n=$(basename "$d"); g=$W/$n.q8_0.gguf; h=$W/$n-deq
  [ -f "$g" ] || $T convert --model-dir "$d" --quantize q8_0 --output "$g" >"$W/$n.convert.log" 2>&1 || { echo "$n: convert failed"; tail -2 "$W/$n.convert.log"; continue; }
  [ -f "$h/config.json" ] || $T convert --gguf "$g" --output-dir "$h" >>"$W/$n.convert.log" 2>&1 || { echo "$n: dequantize failed"; continue; }
  for p in "${PROMPTS[@]}"; do
    a=$($T run --model "$g" --device cpu --input-text "$p" --max-output-len 30 --ignore-eos 2>/dev/null)
    b=$($T run --model "$h" --device cpu --input-text "$p" --max-output-len 30 --ignore-eos 2>/dev/null)
    total=$((total + 1))
    if [ "$a" = "$b" ]; then same=$((same + 1)); echo "| $n | $p | identical |"
    else
      i=0; while [ "${a:$i:1}" = "${b:$i:1}" ] && [ $i -lt ${#a} ]; do i=$((i + 1)); done
      echo "| $n | $p | differ after ${i} chars: q8_0 \"${a:$i:24}\" vs f32 \"${b:$i:24}\" |"
    fi
  done
done
echo "gguf-fidelity: $same of $total greedy 30-token texts identical ($(git rev-parse --short HEAD), $(date -u +%FT%TZ))"
