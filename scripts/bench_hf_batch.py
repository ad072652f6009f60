#!/usr/bin/env python3
"""HF transformers static-batch peer for `trtllm bench --mode throughput`: one `generate()` over a
batch of random token-id prompts (same lengths as ours, EOS ignored), greedy or sampled, bf16 on
the GPU, after a short warm-up. Prints one JSON line: output tokens/s of the batch, wall seconds.

usage: bench_hf_batch.py --model DIR [--batch 256] [--input-len 128] [--output-len 128] [--sampled]
"""
import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--sampled", action="store_true", help="T 0.8, top-p 0.95, top-k 50, repetition penalty 1.1")
    a = ap.parse_args()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).cuda().eval()
    vocab = model.config.vocab_size
    g = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(3, vocab, (a.batch, a.input_len), device="cuda", generator=g)
    kw = dict(do_sample=False)
    if a.sampled:
        kw = dict(do_sample=True, temperature=0.8, top_p=0.95, top_k=50, repetition_penalty=1.1)

    def run(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                 eos_token_id=None, pad_token_id=0, num_beams=1, **kw)
        torch.cuda.synchronize()
        assert out.shape[1] == a.input_len + n
        return time.perf_counter() - t

    run(4)
    wall = run(a.output_len)
    print(json.dumps({"peer": "hf_static_batch", "batch": a.batch, "input_len": a.input_len, "output_len": a.output_len,
                      "sampled": a.sampled, "wall_s": wall, "output_tokens_per_s": a.batch * a.output_len / wall}))


if __name__ == "__main__":
    main()
