#!/usr/bin/env bash
# trtllm vs llama.cpp on the CPU, side by side, one table.
#
#   bash scripts/bench-cpu-vs-llamacpp.sh [HF_MODEL_DIR]
#
# Workload (../shared/reference/anchors-cpu.md): SmolLM2-135M-Instruct, the 12-token prompt
# "Born in north-east France, Soyer trained as a" (raw text, no BOS), 64 greedy new tokens
# (EOS ignored), $THREADS threads, one warm-up then the median of $RUNS runs, F32 and BF16
# weights for both engines; plus a 512-token prompt (prefill throughput) for both.
# Prefill tok/s = prompt tokens / (forward over the prompt); decode tok/s = 63 / (the other
# 63 steps). llama.cpp numbers are its own perf counters (t_p_eval, t_eval); ours are
# `trtllm bench` (wall clock around forward + argmax).
#
# Steps (each skipped when its output exists):
#   1. venv $WORK/llamacpp-venv with llama-cpp-python $LLAMA_VERSION built from source
#      (CMAKE_ARGS=-DGGML_NATIVE=ON; ~10 minutes on 2 cores)
#   2. convert_hf_to_gguf.py + gguf-py from the same sdist (vendor/llama.cpp) -> F32 and BF16
#      GGUFs, run with $CONVERT_PY (a Python with torch + transformers + safetensors;
#      default: the venv of ../shared/tools/make-real-model.sh, else a new venv)
#   3. cargo build --release --bin trtllm (NO_BUILD=1 skips)
#   4. both engines, all rows; the table goes to stdout and $WORK/table.md
#
# Env: WORK (default /tmp/trtllm-bench), TRTLLM (the binary; default $CARGO_TARGET_DIR or
# target/, release/trtllm), THREADS (2), RUNS (3), NEW_TOKENS (64), LONG_PROMPT
# (512; 0 skips), CONVERT_PY, Q4_1_GGUF (adds the Q4_1 rows when the file exists). Q8_0 and
# Q4_K_M GGUFs are made from the F32 GGUF by llama.cpp's quantizer (llama_model_quantize); both
# engines run them, ours directly from the file (blocks kept; int8 activations, f32 for Q8_0).
# AMX: llama.cpp built with GGML_NATIVE enables its AMX buffer type where CPUID says AMX; on
# the project's VMs AMX faults, so the Q4_1 row runs with use_extra_bufts=false. (F32/BF16 do
# not use that buffer.)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${1:-${MODEL:-/tmp/trtllm-models/out/smollm2-135m-instruct}}
WORK=${WORK:-/tmp/trtllm-bench}
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}
NEW_TOKENS=${NEW_TOKENS:-64}
LONG_PROMPT=${LONG_PROMPT:-512}
LLAMA_VERSION=0.3.36
PROMPT="Born in north-east France, Soyer trained as a"
HF_REF=" cartographer and later became a cartographer of the French Empire. He was born in 1782 in the town of Saint-Sé"
Q4_1_GGUF=${Q4_1_GGUF:-/tmp/trtllm-models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf}
NAME=$(basename "$MODEL")
mkdir -p "$WORK/gguf" "$WORK/results"
log() { echo "[bench] $*" >&2; }

[ -f "$MODEL/config.json" ] || { echo "no HF model at $MODEL (bash ../shared/tools/make-real-model.sh smollm2)" >&2; exit 1; }

# ---- 1. llama-cpp-python ----------------------------------------------------------------------
VENV=$WORK/llamacpp-venv
SDIST=$WORK/sdist/llama_cpp_python-$LLAMA_VERSION.tar.gz
if [ ! -f "$SDIST" ]; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    log "downloading the llama-cpp-python $LLAMA_VERSION sdist"
    "$VENV/bin/pip" download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_VERSION" -d "$WORK/sdist"
fi
if ! "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    log "building llama-cpp-python $LLAMA_VERSION from source (GGML_NATIVE=ON; ~10 min on 2 cores; log: $WORK/build.log)"
    t0=$(date +%s)
    CMAKE_ARGS="-DGGML_NATIVE=ON" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$VENV/bin/pip" install -v "$SDIST" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
    log "built in $(( $(date +%s) - t0 )) s"
fi

# ---- 2. F32 / BF16 GGUFs ----------------------------------------------------------------------
SRC=$WORK/llama.cpp-src
if [ ! -f "$SRC/convert_hf_to_gguf.py" ] || [ ! -d "$SRC/conversion" ]; then
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar -xzf "$SDIST" -C "$SRC" --strip-components=3 \
        "llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp/convert_hf_to_gguf.py" \
        "llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp/conversion" \
        "llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp/gguf-py"
fi
CONVERT_PY=${CONVERT_PY:-/tmp/trtllm-models/venv/bin/python}
if ! [ -x "$CONVERT_PY" ] || ! "$CONVERT_PY" -c "import torch, transformers, safetensors, numpy" 2>/dev/null; then
    CONVERT_PY=$WORK/convert-venv/bin/python
    if ! "$CONVERT_PY" -c "import torch, transformers, safetensors, numpy" 2>/dev/null; then
        log "creating $WORK/convert-venv (torch, transformers) for convert_hf_to_gguf.py"
        python3 -m venv "$WORK/convert-venv"
        "$WORK/convert-venv/bin/pip" install -q torch transformers safetensors numpy
    fi
fi
# The converter also imports sentencepiece (and protobuf for some tokenizers): install them
# beside it rather than into a venv we do not own.
PYDEPS=$WORK/pydeps
if ! PYTHONPATH=$PYDEPS "$CONVERT_PY" -c "import sentencepiece" 2>/dev/null; then
    "$CONVERT_PY" -m pip install -q --target "$PYDEPS" sentencepiece
fi
for t in f32 bf16; do
    out=$WORK/gguf/$NAME-$t.gguf
    if [ ! -s "$out" ]; then
        log "converting $MODEL -> $out"
        PYTHONPATH=$SRC/gguf-py:$PYDEPS "$CONVERT_PY" "$SRC/convert_hf_to_gguf.py" "$MODEL" --outtype "$t" --outfile "$out" >"$WORK/convert-$t.log" 2>&1 \
            || { tail -20 "$WORK/convert-$t.log"; exit 1; }
    fi
done

# Q8_0 and Q4_K_M GGUFs of the same weights, made by llama.cpp's own quantizer from the F32 GGUF.
for q in q8_0:7 q4_k_m:15; do
    out=$WORK/gguf/$NAME-${q%%:*}.gguf
    if [ ! -s "$out" ]; then
        log "llama_model_quantize -> $out"
        "$VENV/bin/python" -c "
import sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = int(sys.argv[3])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))" \
            "$WORK/gguf/$NAME-f32.gguf" "$out" "${q##*:}" >"$WORK/quantize-${q%%:*}.log" 2>&1 || { tail -5 "$WORK/quantize-${q%%:*}.log"; exit 1; }
    fi
done

# ---- 3. trtllm ---------------------------------------------------------------------------------
if [ "${NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release --bin trtllm"
    (cd "$ROOT" && cargo build --release --bin trtllm -q)
fi
TRTLLM=${TRTLLM:-${CARGO_TARGET_DIR:-$ROOT/target}/release/trtllm}

# ---- 4. runs -----------------------------------------------------------------------------------
cat >"$WORK/llama_bench.py" <<'PY'
# llama-cpp-python greedy benchmark (anchors-cpu.md, appendix B), plus a JSON result line.
# usage: python llama_bench.py MODEL.gguf THREADS RUNS N_NEW [PROMPT_IDS_FILE]
import json, os, statistics, sys, time
import llama_cpp
from llama_cpp import Llama

PROMPT = "Born in north-east France, Soyer trained as a"
path, nt, runs, n_new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ids_file = sys.argv[5] if len(sys.argv) > 5 else None
if os.environ.get("NO_EXTRA_BUFTS") == "1":
    # AMX tile instructions SIGILL in the project's VMs: keep llama.cpp off its AMX/repack buffers.
    import llama_cpp.llama_cpp as _lc
    _orig = _lc.llama_model_default_params
    def _patched():
        p = _orig()
        p.use_extra_bufts = False
        return p
    _lc.llama_model_default_params = _patched
print(llama_cpp.llama_print_system_info().decode(), file=sys.stderr)
t = time.perf_counter()
llm = Llama(model_path=path, n_threads=nt, n_threads_batch=nt, n_ctx=1024, n_batch=1024, verbose=False, seed=0)
load = time.perf_counter() - t
toks = json.load(open(ids_file)) if ids_file else llm.tokenize(PROMPT.encode(), add_bos=False, special=False)

def run():
    llm.reset()
    ctx = llm._ctx.ctx
    llama_cpp.llama_perf_context_reset(ctx)
    out = []
    t0 = time.perf_counter()
    for tk in llm.generate(toks, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        out.append(tk)
        if len(out) == n_new:
            break
    wall = time.perf_counter() - t0
    return out, wall, llama_cpp.llama_perf_context(ctx)

out, _, _ = run()
pp, tg = [], []
for r in range(runs):
    o, wall, p = run()
    pp.append(1000.0 * p.n_p_eval / p.t_p_eval_ms)
    tg.append(1000.0 * p.n_eval / p.t_eval_ms if p.n_eval else float("nan"))
    print(f"run {r}: prompt {p.n_p_eval} tok {p.t_p_eval_ms:.2f} ms | eval {p.n_eval} tok {p.t_eval_ms:.2f} ms | wall {wall:.3f}s", file=sys.stderr)
    out = o
text = llm.detokenize(out).decode(errors="replace")
print("RESULT " + json.dumps({"load_s": load, "prompt_len": len(toks), "prefill_tok_s": statistics.median(pp),
                              "decode_tok_s": statistics.median(tg), "token_ids": out, "text": text}))
PY

LLAMA_PY=$VENV/bin/python
# Shared boxes: before each measurement wait (up to QUIET_WAIT s) until the whole machine was
# at most QUIET_MAX % busy over one second, and log what it was (results/quiet.log).
QUIET_MAX=${QUIET_MAX:-10}
QUIET_WAIT=${QUIET_WAIT:-300}
busy_pct() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
wait_quiet() {
    local t0=$SECONDS b
    while :; do
        b=$(busy_pct)
        if [ "$b" -le "$QUIET_MAX" ] || [ $(( SECONDS - t0 )) -ge "$QUIET_WAIT" ]; then
            echo "$(date -u +%H:%M:%S) $1: machine ${b}% busy before the run (waited $(( SECONDS - t0 )) s)" >>"$WORK/results/quiet.log"
            return
        fi
    done
}
ours() { # dtype new-tokens input-args... -> json line
    local dt=$1 n=$2; shift 2
    wait_quiet "trtllm $dt $*"
    "$TRTLLM" bench --model "$MODEL" --device cpu --dtype "$dt" --output-len "$n" --warmup 1 --runs "$RUNS" --json "$@" 2>>"$WORK/results/trtllm.err"
}
ours_gguf() { # file new-tokens -> json line (the GGUF run directly: blocks kept)
    local f=$1 n=$2; shift 2
    wait_quiet "trtllm $(basename "$f")"
    "$TRTLLM" bench --model "$f" --device cpu --output-len "$n" --warmup 1 --runs "$RUNS" --json --input-text "$PROMPT" 2>>"$WORK/results/trtllm.err"
}
rss_mb() { # peak resident MiB of a 64-token `trtllm run` of the GGUF $1
    /usr/bin/time -f "%M" -o "$WORK/results/rss.tmp" "$TRTLLM" run --model "$1" --device cpu --input-text "$PROMPT" \
        --max-output-len "$NEW_TOKENS" >/dev/null 2>&1 && echo $(( $(cat "$WORK/results/rss.tmp") / 1024 ))
}
theirs() { # gguf new-tokens [ids-file] -> json line
    wait_quiet "llama.cpp $(basename "$1") ${3:+long}"
    "$LLAMA_PY" "$WORK/llama_bench.py" "$1" "$THREADS" "$RUNS" "$2" ${3:-} 2>>"$WORK/results/llama.err" | sed -n 's/^RESULT //p'
}
export TRTLLM_NUM_THREADS=$THREADS
: >"$WORK/results/trtllm.err"; : >"$WORK/results/llama.err"; : >"$WORK/results/quiet.log"

log "trtllm f32";  ours f32 "$NEW_TOKENS" --input-text "$PROMPT" >"$WORK/results/trtllm-f32.json"
log "trtllm bf16"; ours bf16 "$NEW_TOKENS" --input-text "$PROMPT" >"$WORK/results/trtllm-bf16.json"
log "llama.cpp F32";  theirs "$WORK/gguf/$NAME-f32.gguf"  "$NEW_TOKENS" >"$WORK/results/llama-f32.json"
log "llama.cpp BF16"; theirs "$WORK/gguf/$NAME-bf16.gguf" "$NEW_TOKENS" >"$WORK/results/llama-bf16.json"
if [ -f "$Q4_1_GGUF" ]; then
    log "llama.cpp Q4_1 (use_extra_bufts=false)"
    NO_EXTRA_BUFTS=1 theirs "$Q4_1_GGUF" "$NEW_TOKENS" >"$WORK/results/llama-q4_1.json"
fi
for q in q8_0 q4_k_m; do
    log "llama.cpp ${q^^}"; theirs "$WORK/gguf/$NAME-$q.gguf" "$NEW_TOKENS" >"$WORK/results/llama-$q.json"
done
if [ -f "$Q4_1_GGUF" ]; then
    log "trtllm Q4_1 GGUF"; ours_gguf "$Q4_1_GGUF" "$NEW_TOKENS" >"$WORK/results/trtllm-q4_1.json"
    rss_mb "$Q4_1_GGUF" >"$WORK/results/rss-q4_1.txt" || true
fi
for q in q8_0 q4_k_m; do
    log "trtllm ${q^^} GGUF"; ours_gguf "$WORK/gguf/$NAME-$q.gguf" "$NEW_TOKENS" >"$WORK/results/trtllm-$q.json"
done
if [ "$LONG_PROMPT" != 0 ]; then
    for t in f32 bf16; do
        log "trtllm $t, $LONG_PROMPT-token prompt"
        ours "$t" 2 --input-len "$LONG_PROMPT" >"$WORK/results/trtllm-$t-long.json"
    done
    python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['prompt_ids']))" \
        "$WORK/results/trtllm-f32-long.json" >"$WORK/results/long-prompt-ids.json"
    for t in f32 bf16; do
        log "llama.cpp $t, $LONG_PROMPT-token prompt"
        theirs "$WORK/gguf/$NAME-$t.gguf" 2 "$WORK/results/long-prompt-ids.json" >"$WORK/results/llama-$t-long.json"
    done
fi

python3 - "$WORK/results" "$HF_REF" "$LONG_PROMPT" "$THREADS" "$RUNS" "$NEW_TOKENS" <<'PY' | tee "$WORK/table.md"
import json, os, sys
d, hf_ref, long_n, threads, runs, new = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
def load(name):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return None
    return json.loads(open(p).read().strip().splitlines()[-1])
ours32 = load("trtllm-f32")
rows = [("trtllm", "F32 (from bf16 safetensors)", "trtllm-f32", "trtllm-f32-long"),
        ("trtllm", "BF16 (f32 accumulation)", "trtllm-bf16", "trtllm-bf16-long"),
        ("llama.cpp (llama-cpp-python 0.3.36, native)", "F32 GGUF", "llama-f32", "llama-f32-long"),
        ("llama.cpp (llama-cpp-python 0.3.36, native)", "BF16 GGUF", "llama-bf16", "llama-bf16-long"),
        ("llama.cpp (llama-cpp-python 0.3.36, native)", "Q4_1 GGUF, use_extra_bufts=false", "llama-q4_1", None),
        ("trtllm", "Q4_1 GGUF (run directly, blocks kept)", "trtllm-q4_1", None),
        ("llama.cpp (llama-cpp-python 0.3.36, native)", "Q8_0 GGUF", "llama-q8_0", None),
        ("trtllm", "Q8_0 GGUF (run directly)", "trtllm-q8_0", None),
        ("llama.cpp (llama-cpp-python 0.3.36, native)", "Q4_K_M GGUF", "llama-q4_k_m", None),
        ("trtllm", "Q4_K_M GGUF (run directly)", "trtllm-q4_k_m", None)]
print(f"{threads} threads, 12-token prompt, {new} greedy tokens, warm-up + median of {runs}; "
      f"long prompt: {long_n} tokens (same ids for both engines), 2 new tokens.\n")
print(f"| engine | weights | prefill tok/s (12-token prompt) | decode tok/s | prefill tok/s ({long_n}-token prompt) | load s | HF f32 text prefix (30 tokens) | first 16 tokens = trtllm f32 |")
print("|---|---|---|---|---|---|---|---|")
for eng, w, key, longkey in rows:
    r = load(key)
    if r is None:
        continue
    lr = load(longkey) if longkey else None
    text = r.get("text") or ""
    hf = "yes" if text.startswith(hf_ref) else "no"
    same16 = "-" if ours32 is None else ("yes" if r["token_ids"][:16] == ours32["token_ids"][:16] else "no")
    long_s = f"{lr['prefill_tok_s']:.0f}" if lr else "-"
    print(f"| {eng} | {w} | {r['prefill_tok_s']:.0f} | **{r['decode_tok_s']:.1f}** | {long_s} | {r['load_s']:.2f} | {hf} | {same16} |")
if ours32:
    print()
    for key in ["trtllm-f32", "trtllm-bf16"]:
        r = load(key)
        if r:
            print(f"- {key}: TPOT {r['tpot_ms']:.2f} ms, {r['achieved_gbps']:.1f} GB/s achieved "
                  f"({r['weight_bytes_per_step']/1e6:.0f} MB/step) = {r.get('roofline_pct') or 0:.0f}% of {r.get('peak_gbps') or 0:.1f} GB/s "
                  f"({r.get('peak_source')}); cores busy {r.get('cores_busy') or 0:.2f}; "
                  f"{r['allocs_per_decode_step']:.0f} allocations per decode step; device: {r['device']}")
    print(f"- trtllm f32 text: {ours32['text']!r}")
rss = os.path.join(d, "rss-q4_1.txt")
if os.path.exists(rss) and open(rss).read().strip():
    print(f"- trtllm Q4_1 GGUF `run`, 64 tokens: peak resident {open(rss).read().strip()} MiB")
for key in ["trtllm-q4_1", "trtllm-q8_0", "trtllm-q4_k_m"]:
    r = load(key)
    if r:
        print(f"- {key} text: {r['text']!r}")
PY
echo
echo "Machine load before each run (results/quiet.log):"
sed 's/^/    /' "$WORK/results/quiet.log"
