#!/usr/bin/env python3
"""Random-weight HF checkpoints in real model shapes (for GPU checks and benchmarks on the device).

usage: make_random_hf.py --shape smollm2|llama3-8b|qwen3-moe-8l --out DIR [--dtype bfloat16] [--device cuda] [--std 0.02]
qwen3-moe-8l: Qwen3-30B-A3B's layer (128 experts, top-8, expert width 768) with 8 of its 48 layers.
Weights: seeded normal(0, std) for matrices (norms 1.0), made under torch.device(DEVICE), saved
with save_pretrained (safetensors).
"""
import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
import transformers

SHAPES = {
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
                    rope_theta=100000.0, tie_word_embeddings=True),
    "qwen3-moe-8l": dict(hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_experts=128,
                         num_experts_per_tok=8, norm_topk_prob=True, num_hidden_layers=8, num_attention_heads=32,
                         num_key_value_heads=4, head_dim=128, vocab_size=151936, max_position_embeddings=32768,
                         rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False),
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
    arch = "Qwen3Moe" if "moe" in a.shape else "Llama"
    cfg_cls, model_cls = getattr(transformers, f"{arch}Config"), getattr(transformers, f"{arch}ForCausalLM")
    cfg = cfg_cls(**SHAPES[a.shape], initializer_range=a.std, bos_token_id=1, eos_token_id=2)
    cfg.architectures = [f"{arch}ForCausalLM"]
    with torch.device(a.device):
        model = model_cls(cfg).to(getattr(torch, a.dtype))
    model.save_pretrained(a.out, safe_serialization=True, max_shard_size="5GB")
    print(f"{a.shape}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params -> {a.out}")


if __name__ == "__main__":
    main()
