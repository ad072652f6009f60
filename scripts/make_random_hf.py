#!/usr/bin/env python3
"""Random-weight HF checkpoints in real model shapes (for GPU checks and benchmarks on the device).

usage: make_random_hf.py --shape smollm2|llama3-8b --out DIR [--dtype bfloat16] [--device cuda] [--std 0.02]
Weights: seeded normal(0, std) for matrices (norms 1.0), made under torch.device(DEVICE), saved
with save_pretrained (safetensors).
"""
import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
                    rope_theta=100000.0, tie_word_embeddings=True),
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rms_norm_eps=1e-5,
                      rope_theta=500000.0, tie_word_embeddings=False),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--std", type=float, default=0.02)
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = LlamaConfig(**SHAPES[a.shape], initializer_range=a.std, bos_token_id=1, eos_token_id=2)
    cfg.architectures = ["LlamaForCausalLM"]
    with torch.device(a.device):
        model = LlamaForCausalLM(cfg).to(getattr(torch, a.dtype))
    model.save_pretrained(a.out, safe_serialization=True, max_shard_size="5GB")
    print(f"{a.shape}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params -> {a.out}")


if __name__ == "__main__":
    main()
