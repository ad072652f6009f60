#!/usr/bin/env bash
# Where a batched decode step's time goes, on the GPU machine (carry .device): pure decode
# steps at batch B and context C through `trtllm bench` (CUDA graphs), then the same shape under
# ncu, one kernel-time line per kernel name (gpu__time_duration, serialized kernels).
#   device: bash scripts/step-profile.sh            (SHAPE=llama3-8b, BATCHES="64 256", CTX="128 1000")
#   BIN=.device/old/trtllm to profile another binary.
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels
RES=${OUT:-/tmp/profile-out}; mkdir -p "$RES"
BIN=${BIN:-.device/bin/trtllm}
SHAPE=${SHAPE:-llama3-8b}; S=/tmp/shapes
[ -f $S/$SHAPE/config.json ] || python3 scripts/make_random_hf.py --shape $SHAPE --out $S/$SHAPE --std 0.02 >>"$RES/make.log" 2>&1
j() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(str(round(d.get(k,0),5)) for k in sys.argv[2:]))' "$@" 2>/dev/null || echo "err"; }
declare -a rows
for c in ${CTX:-128 1000}; do
  for b in ${BATCHES:-64 256}; do
    $BIN bench --model $S/$SHAPE --device cuda --batch-size $b --input-len $c --output-len 64 --runs 2 --warmup 1 --json \
        >"$RES/lat-b$b-c$c.json" 2>>"$RES/err.log"
    rows+=("| decode b=$b ctx=$c | $(j "$RES/lat-b$b-c$c.json" tpot_s decode_tok_s) |")
  done
done
if [ "${NCU:-1}" = 1 ]; then
  b=${NCU_BATCH:-256}; c=${NCU_CTX:-1000}
  # Skip the load-time and prefill launches; profile ~2 decode steps' kernels (eager, so every
  # kernel is its own launch).
  timeout 420 ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
      --launch-skip ${NCU_SKIP:-1200} --launch-count ${NCU_COUNT:-700} \
      $BIN bench --model $S/$SHAPE --device cuda --batch-size $b --input-len $c --output-len ${NCU_OUT:-16} --runs 1 --warmup 0 \
      --no-cuda-graphs >"$RES/ncu-b$b-c$c.txt" 2>&1
  echo "ncu rc=$? (b=$b ctx=$c)"
  python3 - "$RES/ncu-b$b-c$c.txt" <<'EOF'
import re, sys
# ncu --print-summary per-kernel: a "name (grid)x(block), ..." header, then metric rows with avg.
txt = open(sys.argv[1]).read().splitlines()
cur, tot = None, {}
for l in txt:
    m = re.match(r"\s+(\S+)\s*\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\).*Invocations\s*=?\s*(\d+)?", l)
    if m and "Context" in l or (m and "Device" in l):
        cur = (m.group(1), int(m.group(2) or 0)); continue
    if cur and "gpu__time_duration.sum" in l:
        f = l.split()
        unit, avg = f[1], float(f[-2].replace(",", ""))
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1.0)
        k = cur[0]; n = cur[1] or 1
        t = tot.setdefault(k, [0, 0.0]); t[0] += n; t[1] += avg * scale * n
        cur = None
s = sum(v[1] for v in tot.values()) or 1
for k, (n, us) in sorted(tot.items(), key=lambda kv: -kv[1][1])[:14]:
    print(f"{k[:48]:48s} n={n:5d} avg={us/n:9.1f} us  share={100*us/s:5.1f}%")
EOF
fi
echo
echo "step-profile: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) | $(cat .device/COMMIT 2>/dev/null) | $SHAPE"
echo "| workload | tpot_s decode_tok_s |"
printf '%s\n' "${rows[@]}"
tail -3 "$RES/err.log" 2>/dev/null
