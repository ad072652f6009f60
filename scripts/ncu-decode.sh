#!/usr/bin/env bash
# Profiler evidence for decode: Nsight Compute on `trtllm bench` (batch 1, bf16), every
# kernel of the prefill and of OUTPUT_LEN-1 decode steps; prints per-kernel time, DRAM bytes and
# achieved bandwidth for the decode steps, the GPU-busy time per step and what share of the
# measured step time it is (the rest is launch/host gaps).
#   device: bash scripts/ncu-decode.sh [MODEL_DIR]     (carry .device; default /tmp/shapes/llama3-8b)
# env: BATCH (1; rows per decode step), INPUT_LEN (16), OUTPUT_LEN (4), EXTRA (more bench flags,
# e.g. "--max-seq-len 256" so a large batch's KV cache fits).
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 TRTLLM_KERNEL_CACHE=/tmp/trtllm-kernels
M=${1:-/tmp/shapes/llama3-8b}; OL=${OUTPUT_LEN:-4}; B=${BATCH:-1}; IL=${INPUT_LEN:-16}
R=${OUT:-/tmp}; mkdir -p "$R"
[ -f "$M/config.json" ] || python3 scripts/make_random_hf.py --shape llama3-8b --out "$M" --std 0.02 >/dev/null 2>&1
cp tests/fixtures/llama/tokenizer.json tests/fixtures/llama/tokenizer_config.json "$M/" 2>/dev/null
# warm the kernel cache outside the profiler
.device/bin/trtllm bench --model "$M" --device cuda --batch-size "$B" --input-len "$IL" --output-len 2 --runs 1 --warmup 0 ${EXTRA:-} >/dev/null 2>&1
ncu --clock-control none --csv --page raw \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
    .device/bin/trtllm bench --model "$M" --device cuda --batch-size "$B" --input-len "$IL" --output-len "$OL" --runs 1 --warmup 0 --json ${EXTRA:-} \
    >"$R/ncu-raw.csv" 2>"$R/ncu.err"
echo "ncu exit $? ($(wc -l <"$R/ncu-raw.csv") lines)"
python3 - "$R/ncu-raw.csv" "$OL" <<'PY'
import csv, sys, collections, re
path, ol = sys.argv[1], int(sys.argv[2])
rows = [l for l in open(path) if l.startswith('"')]
rd = list(csv.DictReader(rows))
SCALE = {"nsecond": 1, "usecond": 1e3, "msecond": 1e6, "second": 1e9,
         "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}
METRICS = ["gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum"]
units = {k: 1.0 for k in METRICS}
if rd and rd[0].get("gpu__time_duration.sum", "") in SCALE:
    units = {k: SCALE.get(rd[0][k], 1.0) for k in METRICS}
    rd = rd[1:]
def num(r, k):
    try:
        return float(r[k].replace(",", "")) * units[k]   # ns for time, bytes for DRAM
    except (KeyError, ValueError):
        return 0.0
rd = [r for r in rd if num(r, "gpu__time_duration.sum") > 0]
n = len(rd)
print(f"{n} kernels profiled")
# the decode steps are the last (ol-1) equal groups after the prefill: find the step size by the
# repeating kernel sequence at the end
names = [re.sub(r"\(.*", "", r["Kernel Name"])[:60] for r in rd]
# every decode step ends with the same kernel (device sampling): the period is the distance
# between its last two occurrences
last = [i for i, nm in enumerate(names) if nm == names[-1]]
step = last[-1] - last[-2] if len(last) >= 2 else None
if not step:
    print("could not find the decode step period"); sys.exit(0)
dec = rd[-step:]
tot_t = sum(num(r, "gpu__time_duration.sum") for r in dec)
tot_b = sum(num(r, "dram__bytes_read.sum") + num(r, "dram__bytes_write.sum") for r in dec)
agg = collections.OrderedDict()
for r, nm in zip(dec, names[-step:]):
    a = agg.setdefault(nm, [0, 0.0, 0.0])
    a[0] += 1; a[1] += num(r, "gpu__time_duration.sum"); a[2] += num(r, "dram__bytes_read.sum") + num(r, "dram__bytes_write.sum")
print(f"one decode step: {step} kernels, GPU time {tot_t/1e3:.1f} us (sum of kernel durations), DRAM {tot_b/1e9:.3f} GB -> {tot_b/tot_t:.0f} GB/s while busy")
print("| kernel | launches/step | us/step | share | GB/step | GB/s |")
print("|---|---|---|---|---|---|")
for nm, (c, t, b) in sorted(agg.items(), key=lambda x: -x[1][1]):
    print(f"| {nm} | {c} | {t/1e3:.1f} | {100*t/tot_t:.1f}% | {b/1e9:.4f} | {b/t:.0f} |")
PY
