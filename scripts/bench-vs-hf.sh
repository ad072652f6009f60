#!/usr/bin/env bash
# One run on the GPU machine: make random-weight checkpoints (SmolLM2-135M and Llama-3-8B shapes,
# bf16, by transformers), run ours and HF transformers (eager; static cache + torch.compile) on them,
# print one table with ratios. Build first here: `bash scripts/gpu-check.sh build` (stages .device/).
#   device: bash scripts/bench-vs-hf.sh     (carry .device)
# env: SHAPE_LIST ("smollm2 llama3-8b"), INPUT_LEN, OUTPUT_LEN, ENGINE_LOAD (1), QUANT ("fp8 int4":
# FP8 / INT4 rows of the 8B shape against our bf16; needs llama3-8b in SHAPE_LIST)
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels
RES=${OUT:-/tmp}; OUT=/tmp/bench-out; mkdir -p "$OUT" "$RES"
T=.device/bin/trtllm
S=/tmp/shapes; mkdir -p $S
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
commit=$(cat .device/COMMIT 2>/dev/null || echo unknown)
IN=${INPUT_LEN:-16}; OL=${OUTPUT_LEN:-128}
# bandwidth roofline of the card (datasheet HBM; KINDS.md measured ~3.0 TB/s copy on the H100)
case "$card" in *H200*) PEAK=4800;; *) PEAK=3350;; esac
declare -a rows
for shape in ${SHAPE_LIST:-smollm2 llama3-8b}; do
  [ -f $S/$shape/config.json ] || python3 scripts/make_random_hf.py --shape $shape --out $S/$shape --std 0.02 >>"$OUT/make.log" 2>&1
  cp tests/fixtures/llama/tokenizer.json tests/fixtures/llama/tokenizer_config.json $S/$shape/ 2>/dev/null
  gb=$(du -b --apparent-size $S/$shape/*.safetensors | awk '{s+=$1} END {printf "%.3f", s/1e9}')
  # ours: one warm-up run (kernel cache), then the measured runs; bench prints JSON
  $T bench --model $S/$shape --device cuda --input-len $IN --output-len $OL --json --runs 3 --warmup 1 >"$OUT/ours-$shape.json" 2>"$OUT/ours-$shape.err"
  ours=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("decode_tok_s",0), d.get("ttft_ms",0), d.get("load_s",0), d.get("achieved_gbps",0))' "$OUT/ours-$shape.json" 2>/dev/null || echo "0 0 0 0")
  $T bench --model $S/$shape --device cuda --input-len 2048 --output-len 1 --json --runs 3 --warmup 1 >"$OUT/ours-ttft-$shape.json" 2>>"$OUT/ours-$shape.err"
  ttft=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("ttft_ms",0))' "$OUT/ours-ttft-$shape.json" 2>/dev/null || echo 0)
  # load-to-ready from an engine dir (convert + build once; the second load has a warm page cache)
  eload=0
  if [ "${ENGINE_LOAD:-1}" = 1 ] && $T convert --model-dir $S/$shape --output-dir $S/$shape-ckpt --force >>"$OUT/ours-$shape.err" 2>&1 \
      && $T build --checkpoint-dir $S/$shape-ckpt --output-dir $S/$shape-engine --force >>"$OUT/ours-$shape.err" 2>&1; then
    for i in 1 2; do
      TRTLLM_LOAD_TIMING=1 $T bench --engine-dir $S/$shape-engine --device cuda --input-len $IN --output-len 2 --json --runs 1 --warmup 0 >"$OUT/ours-eload-$shape.json" 2>>"$OUT/ours-$shape.err"
    done
    eload=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("load_s",0))' "$OUT/ours-eload-$shape.json" 2>/dev/null || echo 0)
    rm -rf $S/$shape-ckpt  # the engine's rank files are hard links: the data stays
  fi
  python3 scripts/bench_hf.py --model $S/$shape --input-len $IN --output-len $OL >"$OUT/hf-$shape.jsonl" 2>"$OUT/hf-$shape.err"
  hf=$(python3 -c 'import json,sys
r={}
for l in open(sys.argv[1]):
    d=json.loads(l); r[d["mode"]]=d
# HF compiled: the faster of generate() compiling itself and our static-cache loop around torch.compile
c=max(r.get("compiled",{}).get("decode_tok_s",0), r.get("compiled_manual",{}).get("decode_tok_s",0))
print(r.get("eager",{}).get("decode_tok_s",0), c, r.get("eager",{}).get("ttft_ms") or 0)' "$OUT/hf-$shape.jsonl" 2>/dev/null || echo "0 0 0")
  read -r o_tok o_ttft16 o_load o_gbps <<<"$ours"; read -r h_e h_c h_ttft <<<"$hf"
  row="$(python3 -c 'import sys
s,gb,o,e,c,ot,ht,ld=sys.argv[1],float(sys.argv[2]),float(sys.argv[3]),float(sys.argv[4]),float(sys.argv[5]),float(sys.argv[6]),float(sys.argv[7]),float(sys.argv[8])
# bytes a decode step reads (bench: weights read per step, e.g. no embedding table) / TPOT;
# the checkpoint size x tok/s when the JSON lacks it
bw=float(sys.argv[11]) or gb*o
r=lambda a,b: f"{a/b:.2f}x" if b else "-"
pk=float(sys.argv[9])
el=float(sys.argv[10])
print(f"| {s} | {gb:.2f} GB | {o:.1f} | {bw:.0f} GB/s ({bw/pk*100:.0f}% of {pk/1000:.2f} TB/s) | {e:.1f} | {c:.1f} | {r(o,e)} | {r(o,c)} | {ot:.1f} | {ht:.1f} | {ld:.1f} s | {el:.1f} s |")' "$shape" "$gb" "$o_tok" "$h_e" "$h_c" "$ttft" "$h_ttft" "$o_load" "$PEAK" "$eload" "$o_gbps")"
  grep -h '"error"' "$OUT/hf-$shape.jsonl" | sed "s/^/HF $shape: /" | cut -c1-300
  grep -h "^\[load\]" "$OUT/ours-$shape.err" | tail -9 | sed "s/^/$shape /"
  rows+=("$row"); echo "ROW $row"; cat "$OUT/ours-$shape.json" "$OUT/hf-$shape.jsonl" >> "$RES/bench-raw.txt" 2>/dev/null
done
# Quantized rows (QUANT="fp8 int4"): the 8B shape converted on the device; HF transformers needs
# the compressed-tensors / autoawq packages for these checkpoints (not installed), so the
# comparison is our own bf16 row of this call.
bf16_tok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("decode_tok_s",0))' "$OUT/ours-llama3-8b.json" 2>/dev/null || echo 0)
for q in ${QUANT:-}; do
  m=$S/llama3-8b-$q; method=$([ $q = int4 ] && echo int4-awq-rtn || echo $q)
  [ -f $m/config.json ] || $T convert --model-dir $S/llama3-8b --output-dir $m --quantize $method >>"$OUT/convert.log" 2>&1 || { tail -2 "$OUT/convert.log"; continue; }
  $T bench --model $m --device cuda --input-len $IN --output-len $OL --json --runs 3 --warmup 1 >"$OUT/ours-$q.json" 2>"$OUT/ours-$q.err"
  $T bench --model $m --device cuda --input-len 2048 --output-len 1 --json --runs 3 --warmup 1 >"$OUT/ours-ttft-$q.json" 2>>"$OUT/ours-$q.err"
  gb=$(du -b --apparent-size $m/*.safetensors | awk '{s+=$1} END {printf "%.2f", s/1e9}')
  row=$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); t=json.load(open(sys.argv[2])).get("ttft_ms",0)
o, bw, b = d.get("decode_tok_s",0), d.get("achieved_gbps",0), float(sys.argv[5])
r = f"{o/b:.2f}x our bf16" if b else "-"
print(f"| llama3-8b {sys.argv[3]} | {sys.argv[4]} GB | {o:.1f} | {bw:.0f} GB/s | n/a (needs compressed-tensors / autoawq) | n/a | {r} | {r} | {t:.1f} | - | - | - |")' "$OUT/ours-$q.json" "$OUT/ours-ttft-$q.json" $q $gb ${bf16_tok:-0} 2>/dev/null || echo "| llama3-8b $q | failed: see $OUT/ours-$q.err |")
  rows+=("$row"); echo "ROW $row"
done

echo
echo "bench-vs-hf: $card | commit $commit | $(date -u +%Y-%m-%dT%H:%MZ) | batch 1, ${IN}-token prompt, $OL decode steps, bf16"
echo "| shape | weights | ours tok/s | ours GB/s (bytes read per step / TPOT) | HF eager tok/s | HF compiled tok/s (best of generate() compiled / static-cache loop) | vs eager | vs compiled | ours TTFT 2048 (ms) | HF eager TTFT 2048 (ms) | ours load (HF dir) | ours load (engine dir, warm) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
