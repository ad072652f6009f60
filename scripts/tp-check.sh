#!/usr/bin/env bash
# Tensor parallelism over NCCL, in two halves (like scripts/gpu-check.sh):
#   bash scripts/tp-check.sh build        # here: trtllm + the gpu_tp test binary into .device/bin
#   bash scripts/tp-check.sh tests        # on a 2- or 4-GPU device (carry .device): gpu_tp (tp 2/4 vs tp 1
#                                         # on the fixtures), `run --tp-size`, and 2 processes by RANK/WORLD_SIZE
#   bash scripts/tp-check.sh bench        # on the device: Llama-3-8B shape, tp 1 vs tp 2, latency + throughput
# Every process runs with NCCL_NVLS_ENABLE=0 (no NVLink multicast).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
D=.device
if [ "$mode" = build ]; then
  set -e
  mkdir -p $D/bin
  export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
  cargo build --release --bin trtllm
  cp "${CARGO_TARGET_DIR:-target}"/release/trtllm $D/bin/
  cargo test --release -p trtllm-tests --no-run --message-format=json --test gpu_tp 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]==["test"]:
        print(m["target"]["name"], m["executable"])' \
    | while read -r name exe; do cp "$exe" "$D/bin/$name"; done
  git rev-parse --short HEAD > $D/COMMIT
  ls -la $D/bin; exit 0
fi
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels
export CARGO_MANIFEST_DIR="$PWD/tests"
OUT=${OUT:-/tmp/tp-out}; mkdir -p "$OUT"
T=$D/bin/trtllm
# cudarc opens `libnccl.so`; NCCL installs `libnccl.so.2` (system or torch's nvidia-nccl wheel).
if ! ldconfig -p | grep -q 'libnccl.so '; then
  lib=$( (ldconfig -p | awk '/libnccl.so.2/ {print $NF; exit}'; \
          python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null) | head -1)
  mkdir -p /tmp/nccl-lib && ln -sf "$lib" /tmp/nccl-lib/libnccl.so
  export LD_LIBRARY_PATH="/tmp/nccl-lib:$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "NCCL: $lib"
fi
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); ngpu=$(nvidia-smi -L | wc -l)
commit=$(cat $D/COMMIT 2>/dev/null || echo unknown)
echo "tp-check $mode: $ngpu x $card | commit $commit | $(date -u +%Y-%m-%dT%H:%MZ)"

if [ "$mode" = tests ]; then
  rc=0
  $D/bin/gpu_tp --test-threads=1 --nocapture >"$OUT/gpu_tp.log" 2>&1 || rc=$?
  grep -E '^TP |test result|panicked' "$OUT/gpu_tp.log"; [ $rc = 0 ] || tail -40 "$OUT/gpu_tp.log"
  echo "gpu_tp: $([ $rc = 0 ] && echo PASS || echo FAIL)"
  F=tests/fixtures/llama; P="Born in north-east France, Soyer trained as a"
  common=(--model $F --input-text "$P" --max-output-len 24 --ignore-eos --dtype f32)
  $T run "${common[@]}" --device cuda:0 >"$OUT/tp1.txt" 2>"$OUT/tp1.err"
  $T run "${common[@]}" --device cuda:0 --tp-size 2 >"$OUT/tp2-threads.txt" 2>"$OUT/tp2-threads.err"
  worlds="2"; [ "$ngpu" -ge 4 ] && worlds="2 4"
  checks="tp2-threads"
  for w in $worlds; do
    for r in $(seq 0 $((w - 1))); do
      RANK=$r WORLD_SIZE=$w LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$((29500 + w)) \
        $T run "${common[@]}" --device cuda >"$OUT/mp$w-rank$r.txt" 2>"$OUT/mp$w-rank$r.err" &
    done
    wait
    checks="$checks mp$w-rank0"
  done
  for f in $checks; do
    if [ -s "$OUT/tp1.txt" ] && cmp -s "$OUT/tp1.txt" "$OUT/$f.txt"; then echo "$f: PASS (same text as tp 1)"; else echo "$f: FAIL"; tail -5 "$OUT/$f.err"; fi
  done
  echo "mp2-rank1 stdout bytes: $(wc -c <"$OUT/mp2-rank1.txt") (ranks > 0 print nothing)"
  tail -n 2 "$OUT/mp2-rank0.err" "$OUT/mp2-rank1.err"
  exit 0
fi

if [ "$mode" = bench ]; then
  S=/tmp/shapes/llama3-8b
  [ -f $S/config.json ] || python3 scripts/make_random_hf.py --shape llama3-8b --out $S --std 0.02 >"$OUT/make.log" 2>&1
  cp tests/fixtures/llama/tokenizer.json tests/fixtures/llama/tokenizer_config.json $S/ 2>/dev/null
  IN=${INPUT_LEN:-16}; OL=${OUTPUT_LEN:-128}; NREQ=${NUM_REQUESTS:-512}
  tps="1 2"; [ "$ngpu" -ge 4 ] && tps="1 2 4"
  for tp in $tps; do
    $T bench --model $S --device cuda:0 --tp-size $tp --input-len $IN --output-len $OL --runs 3 --warmup 1 --json \
      >"$OUT/lat-tp$tp.json" 2>"$OUT/lat-tp$tp.err" || tail -5 "$OUT/lat-tp$tp.err"
    $T bench --mode throughput --model $S --device cuda:0 --tp-size $tp --num-requests $NREQ --max-num-seqs 256 \
      --input-len 128 --output-len 128 --json >"$OUT/thr-tp$tp.json" 2>"$OUT/thr-tp$tp.err" || tail -5 "$OUT/thr-tp$tp.err"
  done
  python3 - "$OUT" "$card" "$commit" "$IN" "$OL" "$NREQ" <<'PY'
import json, sys
out, card, commit, i, o, n = sys.argv[1:]
def j(p):
    try: return json.load(open(f"{out}/{p}"))
    except Exception: return {}
print(f"\nTP scaling: Llama-3-8B shape bf16 | {card} | commit {commit}")
print("| tp | decode tok/s (batch 1) | TPOT ms | TTFT ms | load s | throughput out tok/s | total tok/s |")
print("|---|---|---|---|---|---|---|")
for tp in (1, 2, 4):
    l, t = j(f"lat-tp{tp}.json"), j(f"thr-tp{tp}.json")
    if not l and not t: continue
    g = lambda d, k: d.get(k) if isinstance(d.get(k), (int, float)) else float("nan")
    print(f"| {tp} | {g(l,'decode_tok_s'):.1f} | {g(l,'tpot_ms'):.2f} | {g(l,'ttft_ms'):.1f} | {g(l,'load_s'):.1f} | {g(t,'output_tokens_per_s'):.0f} | {g(t,'total_tokens_per_s'):.0f} |")
print(f"(latency: batch 1, {i}-token prompt, {o} steps; throughput: {n} requests 128/128, max 256 seqs)")
PY
  exit 0
fi
echo "usage: $0 build|tests|bench" >&2; exit 2
